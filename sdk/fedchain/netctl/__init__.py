"""Start, watch and stop the background processes of a one-machine network."""
