"""The only MPI layer: communicators, the agreement on failure, the watchdog, fault points."""
