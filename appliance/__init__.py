"""The Ringlog appliance: supervisor, front end, client and command line."""
