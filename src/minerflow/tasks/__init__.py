"""law tasks that wire the steps into workflows."""
