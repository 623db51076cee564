"""The `ringlog` command line: one module per command or command group,
put under the root group here, so that no command module imports another."""

from appliance.cli.command import ringlog
from appliance.cli.consume import consume
from appliance.cli.groups import groups
from appliance.cli.perf import perf
from appliance.cli.produce import produce
from appliance.cli.serve import serve
from appliance.cli.status import status
from appliance.cli.topics import topics

for _command in (serve, topics, produce, consume, groups, status, perf):
    ringlog.add_command(_command)

main = ringlog

__all__ = ["main"]
