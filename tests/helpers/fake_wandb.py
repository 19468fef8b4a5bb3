"""A loopback stand-in for the W&B service, for tests: wandb's real client code (the public API,
`wandb.sweep`, `wandb sync` through the Go `wandb-core`) talks to it over HTTP, and the test reads
back what was asked.

Start it in a test, point wandb at it with `env()` (WANDB_BASE_URL, a fake 40-character key),
seed it with `add_sweep` / `add_run`, run the code under test, then assert on `requests` (each one
operation: its GraphQL operation name and variables, or a REST path) and on the state it keeps
(sweeps created, runs uploaded, runs attached to a sweep by `priorRunsFilters`).

Every answer is shaped like the real service's for the fields the client reads (the queries are
in wandb's own source: `wandb/apis/public/{sweeps,runs}.py`, `wandb/apis/_generated/operations.py`,
and what wandb-core sends during `wandb sync`, found by logging its requests). An operation this
server does not know is recorded and answered with a GraphQL error, so a test that triggers one
fails loudly instead of passing on an empty answer.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

API_KEY = "f" * 40
ENTITY = "fake-entity"

_OPERATION = re.compile(r"^\s*(?:#graphql\s*)?(query|mutation)\s+(\w+)", re.M)


@dataclass
class Request:
    method: str
    path: str
    operation: str | None = None          # GraphQL operation name; None for REST requests
    variables: dict = field(default_factory=dict)
    query: str = ""
    body: bytes = b""


def iso(seconds: float) -> str:
    """W&B's timestamps: ISO 8601 in UTC without a zone suffix."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


class FakeWandb:
    def __init__(self, entity: str = ENTITY):
        self.entity = entity
        self.requests: list[Request] = []
        self.unknown: list[Request] = []
        self.sweeps: dict[tuple, dict] = {}       # (entity, project, name) -> sweep
        self.runs: dict[tuple, dict] = {}         # (entity, project, name) -> run
        self.uploads: dict[str, bytes] = {}       # uploaded file path -> content
        self.artifacts: dict[str, dict] = {}
        self.file_stream: dict[tuple, list] = {}  # (entity, project, run) -> posted chunks
        self.refused: set[str] = set()            # run names whose UpsertBucket fails
        self.should_stop: set[str] = set()        # run names the service asks to stop (early termination)
        self._lock = threading.RLock()
        self._ids = 0
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "FakeWandb":
        fake = self

        class Handler(_Handler):
            server_state = fake

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict:
        """What points wandb at this server (and keeps it from reading the user's settings)."""
        return {"WANDB_BASE_URL": self.url, "WANDB_API_KEY": API_KEY, "WANDB_SILENT": "true",
                "WANDB_DISABLE_CODE": "true", "WANDB_X_DISABLE_STATS": "true"}

    # ---- seeding and reading ------------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}{self._ids:06d}"

    def add_sweep(self, project: str, name: str, config: dict, entity: str | None = None, state: str = "RUNNING",
                  created_at: float | None = None, display_name: str | None = None) -> dict:
        sweep = {"id": self._next_id("U3dlZXA6"), "name": name, "displayName": display_name,
                 "method": config.get("method"), "state": state, "description": config.get("description"),
                 "bestLoss": None, "config": yaml.safe_dump(config, sort_keys=False),
                 "createdAt": iso(created_at or time.time()), "updatedAt": iso(created_at or time.time()),
                 "runCountExpected": config.get("run_cap"), "prior_runs_filters": None}
        with self._lock:
            self.sweeps[(entity or self.entity, project, name)] = sweep
        return sweep

    def add_run(self, project: str, name: str, config: dict, summary: dict | None = None, history=(),
                state: str = "finished", sweep: str | None = None, entity: str | None = None,
                created_at: float | None = None, display_name: str | None = None) -> dict:
        """A run as the service holds it: config values wrapped as {"value": v} (what W&B stores)."""
        created = created_at or time.time()
        run = {"id": self._next_id("UnVuOn"), "name": name, "displayName": display_name or name,
               "sweepName": sweep, "state": state, "createdAt": iso(created), "heartbeatAt": iso(created + 10),
               "config": {"_wandb": {"value": {"cli_version": "0.31.0"}}, **{k: {"value": v} for k, v in config.items()}},
               "summaryMetrics": dict(summary or {}), "history": [dict(row) for row in history],
               "tags": [], "group": None, "jobType": None, "commit": None, "readOnly": False,
               "description": None, "notes": None, "systemMetrics": {}}
        with self._lock:
            self.runs[(entity or self.entity, project, name)] = run
        return run

    def ops(self, name: str) -> list[Request]:
        """The GraphQL requests of one operation, in order."""
        return [r for r in self.requests if r.operation == name]

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests if r.operation]

    def sweep_runs(self, project: str, sweep: str, entity: str | None = None) -> list[str]:
        entity = entity or self.entity
        return sorted(name for (e, p, name), run in self.runs.items()
                      if (e, p) == (entity, project) and run["sweepName"] == sweep)

    def stream(self, key: tuple, chunk: dict) -> None:
        """One file_stream POST: history rows, the summary, and at the end the exit code."""
        self.file_stream.setdefault(key, []).append(chunk)
        run = self.runs.get(key)
        if run is None:
            return
        files = chunk.get("files") or {}
        for line in (files.get("wandb-history.jsonl") or {}).get("content", []):
            run["history"].append({k: v for k, v in json.loads(line).items()})
        for line in (files.get("wandb-summary.json") or {}).get("content", []):
            run["summaryMetrics"] = json.loads(line)
        if chunk.get("complete"):
            run["state"] = "finished" if chunk.get("exitcode", 0) == 0 else "failed"

    # ---- GraphQL ------------------------------------------------------------------------------------
    def graphql(self, operation: str, variables: dict, query: str) -> dict:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise _GraphQLError(f"fake W&B: unknown operation {operation}")
        with self._lock:
            return handler(variables, query)

    def _project(self, variables, key_project="project", key_entity="entity"):
        return variables.get(key_entity) or self.entity, variables.get(key_project)

    def _project_node(self, entity, project):
        return {"id": f"UHJvamVjdDo{project}", "name": project, "entity": {"id": f"RW50aXR5:{entity}", "name": entity}}

    def op_Viewer(self, variables, query):
        return {"viewer": {"id": "VXNlcjox", "entity": self.entity, "username": self.entity,
                           "email": "fake@example.com", "flags": "{}", "admin": False,
                           "teams": {"edges": []}}}

    def op_GetDefaultEntity(self, variables, query):
        return {"viewer": {"id": "VXNlcjox", "entity": self.entity}}

    def op_OrganizationCoreWeaveOrganizationID(self, variables, query):
        """wandb-core asks this of a server whose address is not loopback: no such organization here."""
        return {"entity": {"organization": None}}

    def op_ServerFeaturesQuery(self, variables, query):
        return {"serverInfo": {"features": []}}

    def _sweep_node(self, sweep: dict) -> dict:
        node = {k: v for k, v in sweep.items() if k != "prior_runs_filters"}
        node["__typename"] = "Sweep"
        node["runCount"] = sum(1 for r in self.runs.values() if r["sweepName"] == sweep["name"])
        return node

    def op_GetSweep(self, variables, query):
        entity, project = self._project(variables)
        sweep = self.sweeps.get((entity, project, variables.get("name")))
        return {"project": None if project is None else {"sweep": sweep and self._sweep_node(sweep)}}

    op_GetSweepLegacy = op_GetSweep

    def _run_node(self, run: dict) -> dict:
        node = {k: v for k, v in run.items() if k != "history"}
        node["projectId"] = "1"
        node["config"] = json.dumps(run["config"])
        node["summaryMetrics"] = json.dumps(run["summaryMetrics"])
        node["systemMetrics"] = json.dumps(run["systemMetrics"])
        node["historyLineCount"] = len(run["history"])
        node["historyKeys"] = None
        node["user"] = {"name": self.entity, "username": self.entity}
        return node

    def _matches(self, run: dict, filters: Any) -> bool:
        """The subset of W&B's run filters the public API sends for a sweep: {"sweep": name},
        {"$and": [...]}, {"$or": [...]}, {"name": id}, {"state": s}."""
        if not filters:
            return True
        if "$and" in filters:
            return all(self._matches(run, f) for f in filters["$and"])
        if "$or" in filters:
            return any(self._matches(run, f) for f in filters["$or"])
        for key, value in filters.items():
            field_value = {"sweep": run["sweepName"], "name": run["name"], "state": run["state"]}.get(key, KeyError)
            if field_value is KeyError:
                raise _GraphQLError(f"fake W&B: filter on {key!r} not supported")
            if field_value != value:
                return False
        return True

    def op_Runs(self, variables, query):
        entity, project = self._project(variables)
        filters = json.loads(variables.get("filters") or "{}")
        runs = [r for (e, p, _), r in self.runs.items() if (e, p) == (entity, project) and self._matches(r, filters)]
        runs.sort(key=lambda r: r["createdAt"])
        start = int(variables.get("cursor") or 0)
        per_page = int(variables.get("perPage") or 50)
        page = runs[start:start + per_page]
        return {"project": {"internalId": "1", "runCount": len(runs), "readOnly": False, "runs": {
            "edges": [{"node": self._run_node(r), "cursor": str(start + i + 1)} for i, r in enumerate(page)],
            "pageInfo": {"endCursor": str(start + len(page)), "hasNextPage": start + len(page) < len(runs)}}}}

    def op_Run(self, variables, query):
        entity, project = self._project(variables)
        run = self.runs.get((entity, project, variables.get("name")))
        return {"project": {"run": run and self._run_node(run)}}

    def op_RunResumeStatus(self, variables, query):
        """wandb-core resuming a run (`wandb.init(resume="allow")`): what the service holds of it."""
        entity, project = self._project(variables)
        node = {"id": f"UHJvamVjdDo{project}", "name": project, "entity": {"id": f"RW50aXR5:{entity}", "name": entity}}
        run = self.runs.get((entity, project, variables.get("name")))
        if run is None:
            return {"model": {**node, "bucket": None}}
        tail = [json.dumps({"_step": i, **row}) for i, row in enumerate(run["history"])][-10:]
        return {"model": {**node, "bucket": {
            "id": run["id"], "name": run["name"], "summaryMetrics": json.dumps(run["summaryMetrics"]),
            "displayName": run["displayName"], "logLineCount": 0, "historyLineCount": len(run["history"]),
            "eventsLineCount": 0, "historyTail": json.dumps(tail), "eventsTail": json.dumps([]),
            "config": json.dumps(run["config"]), "tags": run["tags"], "notes": run["notes"],
            "wandbConfig": json.dumps({"t": (run["config"].get("_wandb") or {}).get("value", {}).get("t")})}}}

    def op_RunStopState(self, variables, query):
        """Whether the service asked the run to stop (its sweep's early termination): `should_stop`."""
        entity, project = self._project(variables)
        run = self.runs.get((entity, project, variables.get("name")))
        stop = variables.get("name") in self.should_stop
        return {"project": {"run": run and {"shouldStop": stop, "stopped": stop}}}

    def op_RunFullHistory(self, variables, query):
        entity, project = self._project(variables)
        run = self.runs.get((entity, project, variables.get("name")))
        if run is None:
            return {"project": {"run": None}}
        rows = [{"_step": i, **row} for i, row in enumerate(run["history"])]
        return {"project": {"run": {"history": [json.dumps(row) for row in rows]}}}

    def op_UpsertBucket(self, variables, query):
        """wandb-core creating or updating a run (`wandb sync`, an online run); a name in `refused`
        is refused (its upload fails, as when the service turns a run down)."""
        if variables.get("name") in self.refused:
            raise _GraphQLError(f"fake W&B: run {variables['name']} refused")
        entity = variables.get("entity") or self.entity
        project = variables.get("project") or "uncategorized"
        key = (entity, project, variables["name"])
        inserted = key not in self.runs
        if inserted:
            self.add_run(project, variables["name"], {}, entity=entity, state="running",
                         display_name=variables.get("displayName"))
        run = self.runs[key]
        if variables.get("config"):
            run["config"] = json.loads(variables["config"])
        if variables.get("displayName"):
            run["displayName"] = variables["displayName"]
        if variables.get("sweep"):
            run["sweepName"] = variables["sweep"]
        if variables.get("summaryMetrics"):
            run["summaryMetrics"].update(json.loads(variables["summaryMetrics"]))
        return {"upsertBucket": {"inserted": inserted, "bucket": {
            "id": run["id"], "name": run["name"], "displayName": run["displayName"], "description": None,
            "config": json.dumps(run["config"]), "sweepName": run["sweepName"],
            "project": self._project_node(entity, project), "historyLineCount": len(run["history"])}}}

    def op_CreateRunFiles(self, variables, query):
        entity, project, run = variables["entity"], variables["project"], variables["run"]
        return {"createRunFiles": {"runID": self.runs[(entity, project, run)]["id"], "uploadHeaders": [], "files": [
            {"name": name, "uploadUrl": f"{self.url}/upload/{entity}/{project}/{run}/{name}"}
            for name in variables["files"]]}}

    def op_CreateArtifact(self, variables, query):
        artifact_id = self._next_id("QXJ0aWZhY3Q6")
        self.artifacts[artifact_id] = dict(variables["input"], state="PENDING")
        return {"createArtifact": {"artifact": {"id": artifact_id, "state": "PENDING",
                                                "artifactSequence": {"latestArtifact": None}}}}

    def op_CreateArtifactManifest(self, variables, query):
        manifest_id = self._next_id("QXJ0aWZhY3RNYW5pZmVzdDo")
        file = {"id": self._next_id("RmlsZTo")}
        if variables.get("includeUpload"):
            file.update(uploadUrl=f"{self.url}/upload/artifacts/{variables['artifactID']}/{variables['name']}",
                        uploadHeaders=[])
        return {"createArtifactManifest": {"artifactManifest": {"id": manifest_id, "file": file}}}

    def op_CreateArtifactFiles(self, variables, query):
        edges = []
        for f in variables["input"]["artifactFiles"]:
            path = f"artifacts/{f['artifactID']}/{f['name']}"
            edges.append({"node": {"storagePath": path, "uploadUrl": f"{self.url}/upload/{path}", "uploadHeaders": [],
                                   "uploadMultipartUrls": None, "artifact": {"id": f["artifactID"]}}})
        return {"createArtifactFiles": {"files": {"edges": edges}}}

    def op_CommitArtifact(self, variables, query):
        artifact = self.artifacts[variables["artifactID"]]
        artifact["state"] = "COMMITTED"
        return {"commitArtifact": {"artifact": {"id": variables["artifactID"], "digest": artifact.get("digest")}}}

    # ---- artifacts, read back (`wandb.Api().artifact(...)`, `Artifact.download`) ----------------------
    def _artifact_entity(self, artifact: dict) -> str:
        return artifact.get("entityName") or self.entity

    def _collection(self, artifact_id: str) -> list[str]:
        """The ids of the artifacts of one collection, oldest first (their version index)."""
        artifact = self.artifacts[artifact_id]
        key = (self._artifact_entity(artifact), artifact["projectName"], artifact["artifactCollectionName"])
        return [i for i, a in self.artifacts.items()
                if (self._artifact_entity(a), a["projectName"], a["artifactCollectionName"]) == key]

    def find_artifact(self, entity: str, project: str, name: str) -> str | None:
        """The id of artifact `COLLECTION:ALIAS` (or `COLLECTION:vN`) of a project, committed only."""
        collection, _, alias = name.partition(":")
        alias = alias or "latest"
        for artifact_id, a in reversed(list(self.artifacts.items())):
            if (self._artifact_entity(a), a["projectName"], a["artifactCollectionName"]) != (entity, project, collection):
                continue
            if a.get("state") != "COMMITTED":
                continue
            aliases = {x["alias"] for x in a.get("aliases") or []}
            if alias in aliases or alias == f"v{self._collection(artifact_id).index(artifact_id)}":
                return artifact_id
        return None

    def _artifact_node(self, artifact_id: str) -> dict:
        a = self.artifacts[artifact_id]
        entity, project = self._artifact_entity(a), a["projectName"]
        project_node = {"id": f"UHJvamVjdDo{project}", "internalId": "1", "name": project, "entity": {"name": entity}}
        files = [k for k in self.uploads if k.startswith(f"artifacts/{artifact_id}/") and
                 not k.endswith("/wandb_manifest.json")]
        return {"__typename": "Artifact", "id": artifact_id,
                "artifactSequence": {"__typename": "ArtifactSequence", "name": a["artifactCollectionName"],
                                     "project": project_node},
                "versionIndex": self._collection(artifact_id).index(artifact_id),
                "artifactType": {"name": a["artifactTypeName"]}, "description": a.get("description"),
                "metadata": a.get("metadata"), "ttlDurationSeconds": -1, "ttlIsInherited": True, "tags": [],
                "historyStep": a.get("historyStep"), "state": a.get("state"),
                "size": sum(len(self.uploads[k]) for k in files), "digest": a.get("digest"), "commitHash": None,
                "fileCount": len(files), "createdAt": iso(time.time()), "updatedAt": iso(time.time()),
                "aliases": [{"__typename": "ArtifactAlias", "id": f"QWxpYXM6{x['alias']}", "alias": x["alias"],
                             "artifactCollection": {"__typename": "ArtifactSequence",
                                                    "name": a["artifactCollectionName"], "project": project_node}}
                            for x in a.get("aliases") or []],
                "_project": project_node}

    def op_ArtifactMembershipByName(self, variables, query):
        artifact_id = self.find_artifact(variables.get("entity") or self.entity, variables["project"], variables["name"])
        if artifact_id is None:
            return {"project": {"artifactCollectionMembership": None}}
        node = self._artifact_node(artifact_id)
        project_node = node.pop("_project")
        collection = {"__typename": "ArtifactSequence", "name": self.artifacts[artifact_id]["artifactCollectionName"],
                      "project": project_node}
        return {"project": {"artifactCollectionMembership": {
            "__typename": "ArtifactCollectionMembership", "id": f"TWVtYmVyc2hpcDo{artifact_id}",
            "versionIndex": node["versionIndex"], "createdAt": node["createdAt"],
            "aliases": [{k: v for k, v in x.items() if k != "artifactCollection"} for x in node["aliases"]],
            "artifactCollection": collection, "artifact": node}}}

    def op_FetchArtifactManifest(self, variables, query):
        artifact_id = variables["id"]
        if artifact_id not in self.artifacts:
            return {"artifact": None}
        return {"artifact": {"currentManifest": {"file": {
            "directUrl": f"{self.url}/download/artifacts/{artifact_id}/wandb_manifest.json"}}}}

    def op_GetArtifactMembershipFileUrls(self, variables, query):
        entity = variables.get("entity") or self.entity
        artifact_id = self.find_artifact(entity, variables["project"], f"{variables['collection']}:{variables['alias']}")
        if artifact_id is None:
            return {"project": {"artifactCollection": None}}
        prefix = f"artifacts/{artifact_id}/"
        names = sorted(k[len(prefix):] for k in self.uploads if k.startswith(prefix) and not k.endswith("wandb_manifest.json"))
        return {"project": {"artifactCollection": {"__typename": "ArtifactSequence", "artifactMembership": {"files": {
            "pageInfo": {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False},
            "edges": [{"node": {"__typename": "File", "name": name,
                                "directUrl": f"{self.url}/download/{prefix}{name}"}} for name in names]}}}}}

    def op_ArtifactType(self, variables, query):
        """Whether an artifact of that name exists (wandb-core asks before logging one): never here."""
        return {"project": {"artifact": None}}

    def op_UpsertSweep(self, variables, query):
        entity = variables.get("entityName") or self.entity
        project = variables.get("projectName") or "uncategorized"
        if variables.get("id"):
            found = [s for s in self.sweeps.values() if s["id"] == variables["id"]]
            if not found:
                raise _GraphQLError("fake W&B: no sweep with that id")
            sweep = found[0]
            if variables.get("state"):
                sweep["state"] = variables["state"]
        else:
            config = yaml.safe_load(variables["config"])
            name = f"sw{len(self.sweeps) + 1:06d}"
            sweep = self.add_sweep(project, name, config, entity=entity, display_name=variables.get("displayName"))
            if variables.get("priorRunsFilters"):
                sweep["prior_runs_filters"] = json.loads(variables["priorRunsFilters"])
                for (e, p, _), run in self.runs.items():   # the service attaches the matching runs
                    if (e, p) == (entity, project) and self._matches(run, sweep["prior_runs_filters"]):
                        run["sweepName"] = name
        return {"upsertSweep": {"sweep": {"name": sweep["name"], "project": self._project_node(entity, project)},
                                "configValidationWarnings": []}}


class _GraphQLError(Exception):
    pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client closing a kept-alive connection is not an error worth a traceback."""
        import sys
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _operation_name(payload: dict) -> str | None:
    if payload.get("operationName"):
        return payload["operationName"]
    match = _OPERATION.search(payload.get("query") or "")
    return match.group(2) if match else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: FakeWandb

    def log_message(self, *args):      # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        fake, body = self.server_state, self._body()
        if self.path.rstrip("/").endswith("/graphql"):
            payload = json.loads(body or b"{}")
            request = Request("POST", self.path, _operation_name(payload), payload.get("variables") or {},
                              payload.get("query") or "", body)
            fake.requests.append(request)
            try:
                data = fake.graphql(request.operation, request.variables, request.query)
            except _GraphQLError as e:
                fake.unknown.append(request)
                return self._send(200, {"data": None, "errors": [{"message": str(e)}]})
            return self._send(200, {"data": data})
        request = Request("POST", self.path, body=body)
        fake.requests.append(request)
        return self._rest(request)

    def do_PUT(self):
        fake, body = self.server_state, self._body()
        request = Request("PUT", self.path, body=body)
        fake.requests.append(request)
        return self._rest(request)

    def do_GET(self):
        request = Request("GET", self.path)
        self.server_state.requests.append(request)
        return self._rest(request)

    def _rest(self, request: Request):
        fake = self.server_state
        if request.path.startswith("/sdk/otel/"):          # wandb-core's own telemetry
            return self._send(200, {})
        if request.method == "PUT" and request.path.startswith("/upload/"):
            with fake._lock:
                fake.uploads[request.path[len("/upload/"):]] = request.body
            return self._send(200, {})
        if request.method == "GET" and request.path == "/":      # mlp's reachability probe
            return self._send(200, {"fake": "W&B"})
        if request.method == "GET" and request.path.startswith("/download/"):
            content = fake.uploads.get(request.path[len("/download/"):].split("?")[0])
            if content is None:
                return self._send(404, {"error": "fake W&B: no such file"})
            return self._send(200, raw=content)
        match = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", request.path)
        if request.method == "POST" and match:
            with fake._lock:
                fake.stream(match.groups(), json.loads(request.body or b"{}"))
            return self._send(200, {"exitcode": None, "limits": {}})
        fake.unknown.append(request)
        return self._send(404, {"error": f"fake W&B: no route {request.method} {request.path}"})


class ForwardProxy:
    """A loopback HTTP forward proxy for tests. Clients configured with HTTP_PROXY send it requests
    in absolute form (`POST http://wandb.example.test:8080/graphql`); it forwards each to the
    address `hosts` maps the host name to (a name nothing else resolves, so only the proxy can reach
    it) and records (method, host, path) in `seen`."""

    def __init__(self, hosts: dict[str, tuple[str, int]]):
        self.hosts = dict(hosts)
        self.seen: list[tuple[str, str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "ForwardProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                import http.client
                from urllib.parse import urlsplit
                target = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.command, target.hostname or "", target.path))
                upstream = proxy.hosts.get(target.hostname or "")
                if upstream is None:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(*upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "connection", "keep-alive", "host")}
                headers["Host"] = f"{upstream[0]}:{upstream[1]}"
                path = target.path + (f"?{target.query}" if target.query else "")
                conn.request(self.command, path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_HEAD = _forward

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
