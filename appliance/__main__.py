"""`python -m appliance ...` is the `ringlog` command."""

from appliance.cli import main

main()
