"""A stand-in for `llm -s '...'` in tests: reads English on stdin, writes "KO: <text>" to stdout.

Options pick an input to misbehave on (the input contains the given text):
  --fail-on TEXT     exit 3 with a message on stderr
  --sleep-on TEXT    sleep a minute (for the caller's timeout)
  --hang-on-call N   on the Nth call (counted in --state DIR), write DIR/hung (this pid), sleep
  --edit FILE --edit-on TEXT --old A --new B   replace A by B in FILE first (the editor saves)
  --fail-first N     fail the first N calls (counted in --state DIR), then answer
"""

import argparse
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--fail-on")
parser.add_argument("--sleep-on")
parser.add_argument("--hang-on-call", type=int)
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--state")
parser.add_argument("--edit")
parser.add_argument("--edit-on")
parser.add_argument("--old")
parser.add_argument("--new")
parser.add_argument("--prefix", default="KO: ")
args = parser.parse_args()

english = sys.stdin.buffer.read().decode("utf-8")
call = 0
if args.state:
    counter = Path(args.state) / "calls"
    call = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(call))
if args.fail_on and args.fail_on in english:
    print(f"model refused: {args.fail_on}", file=sys.stderr)
    sys.exit(3)
if args.sleep_on and args.sleep_on in english:
    time.sleep(60)
if args.hang_on_call and call == args.hang_on_call:
    (Path(args.state) / "hung").write_text(str(os.getpid()))
    time.sleep(600)
if args.fail_first and call <= args.fail_first:
    print("503 from the model's API", file=sys.stderr)
    sys.exit(1)
if args.edit and args.edit_on in english:
    path = Path(args.edit)
    path.write_bytes(path.read_bytes().replace(args.old.encode(), args.new.encode(), 1))
sys.stdout.write(args.prefix + english.strip() + "\n")
