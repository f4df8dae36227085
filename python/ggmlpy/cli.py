"""ggmlpy command line: `ggmlpy info|generate|bench|convert|quantize ...`."""
import argparse
import sys


def cmd_info(args) -> int:
    from . import _core
    print(_core.info_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ggmlpy", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="version, CPU features, kernel table, threads")
    s.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
