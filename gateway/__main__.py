from gateway.cli import main
if __name__ == '__main__': raise SystemExit(main())  # noqa: E701 (python -m gateway)
