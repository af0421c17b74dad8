"""What the workstation and the image agree on, and nothing else: the resource config a job reads, the
secret its hosts share, each mode's arguments and paths, the request formats an endpoint accepts.
Both sides import these; neither imports the other."""
