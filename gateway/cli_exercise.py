"""The ``crisisgw exercise`` command group: play a scenario (or replay a past incident)
through this node, follow it, pause, resume or stop it, and write its after-action
report. The node plays the exercise; this command only drives and watches it."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.web.exercise_report import report_csv, report_html

#: (args, method, path, body) -> (HTTP status, JSON answer), on this node's API.
Call = Callable[[argparse.Namespace, str, str, dict[str, Any] | None], tuple[int, Any]]


def _print_problem(answer: Any) -> int:
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 1


def _follow(call: Call, args: argparse.Namespace, run_id: str) -> int:
    """Print each inject as it goes out, until the run ends (Ctrl-C leaves it running)."""
    shown: set[int] = set()
    try:
        while True:
            status, run = call(args, "GET", f"/v1/exercises/{run_id}", None)
            if status != 200:
                return _print_problem(run)
            for i in run["injects"]:
                if i["message_id"] and i["index"] not in shown:
                    shown.add(i["index"])
                    print(f"  minute {i['minute']:>7g}  #{i['index']:<3} {i['from']:9} "
                          f"{i['type']:6} -> {', '.join(i['to'])}  {i['message_id']}",
                          flush=True)
                elif i["errors"] and i["index"] not in shown and len(i["errors"]) >= 5:
                    shown.add(i["index"])
                    print(f"  minute {i['minute']:>7g}  #{i['index']:<3} NOT SENT: "
                          f"{i['errors'][-1]}", flush=True)
            if run["status"] in ("finished", "stopped"):
                print(f"exercise {run['status']}: {run['sent']}/{run['total']} injects sent")
                print(f"after-action report: crisisgw exercise report {run_id} -c {args.config}")
                return 0 if run["sent"] == run["total"] else 3
            time.sleep(args.poll)
    except KeyboardInterrupt:
        print(f"\nthe exercise goes on in the node: crisisgw exercise pause|stop {run_id} "
              f"-c {args.config}")
        return 0


def _cmd_run(call: Call, args: argparse.Namespace) -> int:
    if args.command_name == "replay":
        body: dict[str, Any] = {"replay": args.incident}
    else:
        body = {"scenario": Path(args.scenario).read_text(encoding="utf-8")}
    if args.speed:
        body["speed"] = args.speed
    status, answer = call(args, "POST", "/v1/exercises", body)
    if status != 201:
        return _print_problem(answer)
    run_id = answer["id"]
    _, run = call(args, "GET", f"/v1/exercises/{run_id}", None)
    print(f"exercise {run_id} started: {run['name']}, {run['total']} injects, "
          f"speed x{run['speed']:g}")
    if args.detach:
        return 0
    return _follow(call, args, run_id)


def _cmd_control(call: Call, args: argparse.Namespace) -> int:
    status, run = call(args, "POST", f"/v1/exercises/{args.id}/{args.command_name}", {})
    if status != 200:
        return _print_problem(run)
    print(f"exercise {run['id']}: {run['status']} at minute {run['minute']:g}, "
          f"{run['sent']}/{run['total']} injects sent")
    return 0


def _cmd_status(call: Call, args: argparse.Namespace) -> int:
    status, run = call(args, "GET", f"/v1/exercises/{args.id}", None)
    print(json.dumps(run, indent=2, ensure_ascii=False))
    return 0 if status == 200 else 1


def _cmd_report(call: Call, args: argparse.Namespace) -> int:
    status, rep = call(args, "GET", f"/v1/exercises/{args.id}/report.json", None)
    if status != 200:
        return _print_problem(rep)
    if args.format == "json":
        text = json.dumps(rep, indent=2, ensure_ascii=False) + "\n"
    elif args.format == "csv":
        text = report_csv(rep)
    else:
        text = report_html(rep, rep.get("controller", ""))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"after-action report written to {args.output}")
    else:
        print(text, end="")
    return 0


def add_exercise(sub: Any, with_api: Callable[[argparse.ArgumentParser], None],
                 call: Call) -> None:
    """The ``exercise`` command group, on this node's API (``with_api`` adds -c and the
    token options; ``call`` makes a request)."""
    top = sub.add_parser("exercise", help="exercises on the live federation")
    cmds = top.add_subparsers(dest="exercise", required=True)
    run = cmds.add_parser("run", help="play a scenario (TOML) through the real nodes")
    run.add_argument("scenario")
    replay = cmds.add_parser("replay", help="replay a past incident as an exercise")
    replay.add_argument("incident")
    for p, name in ((run, "run"), (replay, "replay")):
        p.add_argument("--speed", type=float, help="scenario minutes per minute (default: "
                       "the scenario's, else 1)")
        p.add_argument("--detach", action="store_true", help="start it and return")
        p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
        with_api(p)
        p.set_defaults(func=lambda a: _cmd_run(call, a), command_name=name)
    for name in ("pause", "resume", "stop"):
        p = cmds.add_parser(name, help=f"{name} an exercise")
        p.add_argument("id")
        with_api(p)
        p.set_defaults(func=lambda a: _cmd_control(call, a), command_name=name)
    status = cmds.add_parser("status", help="where an exercise stands, inject by inject")
    status.add_argument("id")
    with_api(status)
    status.set_defaults(func=lambda a: _cmd_status(call, a))
    rep = cmds.add_parser("report", help="the after-action report (HTML, CSV or JSON)")
    rep.add_argument("id")
    rep.add_argument("--format", choices=["html", "csv", "json"], default="html")
    rep.add_argument("-o", "--output", help="file to write (default: standard output)")
    with_api(rep)
    rep.set_defaults(func=lambda a: _cmd_report(call, a))
