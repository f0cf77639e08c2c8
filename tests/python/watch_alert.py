"""An integrator's client in Python: stubs generated from proto/ with
grpcio-tools (by tests/python_client.rs), a health check, then the
supervisor feed until the first alert arrives.

usage: watch_alert.py STUBS_DIR HOST:PORT TOKEN
Prints one JSON line per step; exits 0 once an alert has arrived.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from callwatch.v1 import supervisor_pb2, supervisor_pb2_grpc  # noqa: E402


def main() -> int:
    address, token = sys.argv[2], sys.argv[3]
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="callwatch.v1.Supervisor"), timeout=10
        )
        print(json.dumps({"health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}), flush=True)

        supervisor = supervisor_pb2_grpc.SupervisorStub(channel)
        feed = supervisor.WatchAlerts(
            supervisor_pb2.WatchAlertsRequest(resume_after="c0"),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=120,
        )
        for event in feed:
            kind = event.WhichOneof("event")
            print(json.dumps({"event": kind, "cursor": event.cursor, "call_id": event.call_id}), flush=True)
            if kind == "alert":
                print(
                    json.dumps(
                        {
                            "rule_id": event.alert.rule_id,
                            "severity": event.alert.severity,
                            "start_s": event.alert.start_s,
                            "evidence": event.alert.evidence,
                        }
                    ),
                    flush=True,
                )
                feed.cancel()
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
