"""The likelihood-free-inference workflow steps, from files to files, with tracking.

Each module holds one step (sampling, training, evaluation, plotting) as plain functions that
read their inputs from folders and write their outputs atomically to folders. The step
commands of the CLI and the law tasks both call these functions, so there is one code path.
"""
