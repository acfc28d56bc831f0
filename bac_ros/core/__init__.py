"""The small base every other package uses: settings dataclasses with ranges, and image helpers."""
