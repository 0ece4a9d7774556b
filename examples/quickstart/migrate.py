"""The quickstart's one-shot task: prepares data/ before the API starts, then exits 0."""

from __future__ import annotations

from pathlib import Path

data = Path(__file__).with_name("data")
data.mkdir(exist_ok=True)
greeting = data / "greeting.txt"
if not greeting.exists():
    greeting.write_text("hello from a3s\n")
    print(f"created {greeting}", flush=True)
print("migrations done", flush=True)
