"""File formats: MadMiner HDF5 event files, sample folders, columnar files, atomic writes."""
