"""Where the layers meet: jobs, plans, inspection, journal, work folder and the data pass."""
