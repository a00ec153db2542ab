"""Drive resound through the official `pusher` Python SDK (3.x).

Usage: python sdk.py <command> '<json args>'

Prints one JSON object: {"result": <SDK return value>} on success, or
{"error": {"type": ..., "message": ...}} with exit status 1. The Node tests
assert on that output. Connection details come from the environment
(RESOUND_HOST, RESOUND_PORT, RESOUND_APP_ID, RESOUND_APP_KEY,
RESOUND_APP_SECRET, RESOUND_MASTER_KEY_BASE64).

The Python SDK matters because its GET requests sign `body_md5` of the
empty body, which a Reverb-compatible server must accept.
"""

import json
import os
import sys

import pusher


def client():
    return pusher.Pusher(
        app_id=os.environ["RESOUND_APP_ID"],
        key=os.environ["RESOUND_APP_KEY"],
        secret=os.environ["RESOUND_APP_SECRET"],
        ssl=False,
        host=os.environ.get("RESOUND_HOST", "127.0.0.1"),
        port=int(os.environ["RESOUND_PORT"]),
        timeout=5,
        encryption_master_key_base64=os.environ.get("RESOUND_MASTER_KEY_BASE64"),
    )


def run(command, args):
    p = client()
    if command == "trigger":
        return p.trigger(args["channels"], args["event"], args["data"], args.get("socket_id"))
    if command == "trigger_batch":
        return p.trigger_batch(args["batch"])
    if command == "channels_info":
        return p.channels_info(args.get("prefix_filter"), args.get("attributes", []))
    if command == "channel_info":
        return p.channel_info(args["channel"], args.get("attributes", []))
    if command == "users_info":
        return p.users_info(args["channel"])
    if command == "authorize":
        # What a Python backend's auth endpoint would answer.
        return p.authenticate(args["channel"], args["socket_id"], args.get("custom_data"))
    if command == "authenticate_user":
        # What a Python backend's user-authentication endpoint would answer.
        return p.authenticate_user(args["socket_id"], args["user_data"])
    if command == "send_to_user":
        return p.send_to_user(args["user_id"], args["event"], args["data"])
    if command == "terminate_user_connections":
        # Posts to /users/{id}/terminate_connections (no /apps/{id} prefix).
        return p.terminate_user_connections(args["user_id"])
    if command == "validate_webhook":
        # What a Python receiver does with a webhook: the body as a dict when the key and
        # signature verify (and time_ms is recent), else None.
        return p.validate_webhook(args["key"], args["signature"], args["body"])
    raise ValueError("unknown command: %s" % command)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command = sys.argv[1]
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    try:
        result = run(command, args)
    except Exception as exc:  # report every SDK failure as JSON
        print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
        return 1
    print(json.dumps({"result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
