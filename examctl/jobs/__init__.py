"""One module per job; each job is a plain function returning a result object."""
