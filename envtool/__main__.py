import sys

try:
    from envtool.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI's imports load (most of a second): no traceback
    print("interrupted: nothing was started", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    main()
