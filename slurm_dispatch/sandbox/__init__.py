"""The embedded default: an emulator of the Arvados API and a crunch-run stand-in, for tests and the demo."""
