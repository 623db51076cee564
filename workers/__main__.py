"""`python -m workers --index N --endpoint ipc://...`: one partition worker process."""

import argparse

from workers.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(prog="ringlog worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--endpoint", required=True, help="the supervisor's worker socket")
    parser.add_argument("--retention-check-ms", type=int, default=300_000)
    args = parser.parse_args()
    try:
        from setproctitle import setproctitle
    except ImportError:  # optional: names the process for ps and top
        pass
    else:
        setproctitle(f"ringlog: worker {args.index}")
    Worker(args.index, args.endpoint, args.retention_check_ms).run()


if __name__ == "__main__":
    main()
