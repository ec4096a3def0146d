"""Per-record and online detectors. Each detector lives in its own module behind the protocol in `base`."""
