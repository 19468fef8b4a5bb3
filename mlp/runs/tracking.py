"""Where a run's rows go: Weights & Biases (online, offline or disabled) and the local store.

Both trackers have the same small interface — start, log_samples, log, finish — so the
experiment code fans out to them without knowing which is which.
"""
import os
import sys
from pathlib import Path

import numpy as np

from mlp.errors import UsageError
from mlp.runs import wandb_access as access
from mlp.runs.store import StoreError, new_id


# ---- W&B ----------------------------------------------------------------------------------

MODEL_ARTIFACT = "mlp-model"        # every run's model file: artifact MODEL_ARTIFACT:RUN_ID of type "model"
MODEL_FILE = "model.npz"            # its one file
CONFUSION_COUNTS = "confusion_matrix_counts"   # W&B summary key of the test confusion matrix (counts)


def resolve_wandb_mode(flag):
    """--wandb_mode auto|online|offline|disabled -> the mode for wandb.init; never prompts.

    auto: WANDB_MODE from the environment if set (agents set it), else online when W&B has
    credentials for its server (mlp.runs.wandb_access: `WANDB_API_KEY`, or the netrc entry `wandb
    login [--host URL]` wrote) and the server answers (through the proxy wandb would use), else
    offline — said in one line when credentials exist but the server does not answer.
    """
    if flag == "auto":
        env = os.environ.get("WANDB_MODE", "").lower()
        if env in ("online", "offline", "disabled"):
            flag = env
        elif env == "run":
            flag = "online"
        elif env == "dryrun":
            flag = "offline"
        else:
            url = access.base_url()
            if not access.credentials_exist(url):
                return "offline"
            why = access.unreachable(url, access.timeout_seconds())
            if why:
                print(f"W&B at {url} is unreachable ({why}): logging offline; upload later with `wandb sync`",
                      file=sys.stderr, flush=True)
                return "offline"
            return "online"
    if flag == "online" and not access.credentials_exist():
        raise UsageError(f"--wandb_mode online needs W&B credentials for {access.base_url()}: run `wandb login` (a "
                         f"self-hosted server: `wandb login --host URL`) or set WANDB_API_KEY, or use --wandb_mode "
                         f"offline (sync later with `wandb sync`)")
    return flag


def installed_packages():
    """(name, version) of every installed distribution: what W&B records as a run's
    requirements.txt. Read from the header of each metadata file (~6 ms), where W&B's own reading
    at every wandb.init parses each file whole, long descriptions included (~0.07 s a run)."""
    from importlib.metadata import distributions
    found = []
    for dist in distributions():
        try:
            text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        except (OSError, UnicodeDecodeError):     # unreadable metadata: skip it, as W&B does
            continue
        fields = {}
        for line in text.split("\n\n", 1)[0].splitlines():   # the headers end at the first blank line
            key, sep, value = line.partition(":")
            if sep and key in ("Name", "Version"):
                fields.setdefault(key, value.strip())
        if fields.get("Name") and fields.get("Version"):
            found.append((fields["Name"], fields["Version"]))
    return found


class WandbTracker:
    def __init__(self, mode, project, entity=None):
        self.mode, self.project, self.entity = mode, project, entity
        self.run = None

    def start(self, config, name, run_id=None, resume=False):
        """Start the W&B run and return the effective config (a sweep may override values).
        `resume`: the run continues an interrupted one under the same id (W&B's resume="allow")."""
        if self.mode == "disabled":  # no W&B at all: skip its import and start-up (~0.5 s a run)
            return dict(config)
        import wandb
        self.wandb = wandb
        os.environ.setdefault("WANDB_SILENT", "true")
        try:                     # the run's requirements.txt is written below, faster than W&B does
            settings = wandb.Settings(x_save_requirements=False)
        except Exception:        # a W&B without that setting writes it itself
            settings = None
        try:
            self.run = wandb.init(project=self.project, entity=self.entity, config=config, mode=self.mode,
                                  id=run_id, reinit="finish_previous", settings=settings,
                                  **({"resume": "allow"} if resume else {}))
        except Exception as e:  # wandb raises many types (CommError, UsageError, ...) when it cannot start
            hint = "; try --wandb_mode offline" if self.mode == "online" else ""
            raise UsageError(f"W&B could not start a {self.mode} run ({type(e).__name__}: {' '.join(str(e).split())[:300]}){hint}") from None
        if settings is not None:
            self._save_requirements(installed_packages())
        effective = dict(wandb.config)
        self.rename(name)
        return effective

    def _save_requirements(self, packages):
        """The run's requirements.txt, as W&B writes it (`name==version` lines), uploaded by W&B."""
        path = Path(self.run.dir) / "requirements.txt"
        try:
            path.write_text("".join(f"{name}=={version}\n" for name, version in packages))
            self.run.save(str(path), base_path=self.run.dir, policy="now")
        except Exception as e:   # a side file: the run goes on without it, as under W&B's own reading
            print(f"warning: could not save {path}: {getattr(e, 'strerror', None) or e}", file=sys.stderr, flush=True)

    def rename(self, name):
        if self.run is not None:
            self.run.name = name

    @property
    def where(self):
        """(entity, project) the run logs to in W&B: the live run's when it has them (offline, the
        entity is only known if given); (None, None) with W&B disabled."""
        if self.mode == "disabled":
            return None, None
        entity = getattr(self.run, "entity", None) if self.run is not None else None
        project = getattr(self.run, "project", None) if self.run is not None else None
        return (entity or self.entity or None), (project or self.project or None)

    @property
    def offline_dir(self):
        """The offline run directory (what `wandb sync` takes), or None."""
        if self.run is None or self.mode != "offline":
            return None
        return str(Path(self.run.dir).parent)

    def log_samples(self, images, labels, class_names):
        self.wandb.log({"samples": [self.wandb.Image(img.reshape(28, 28), caption=class_names[c])
                                    for img, c in zip(images, labels)]}, commit=False)

    def log(self, row):
        if self.run is not None:
            self.wandb.log(row)

    def log_model(self, path, run_id, metadata=None):
        """The model file as a W&B artifact of type `model` in the run's project, aliased by the run
        id (`MODEL_ARTIFACT:RUN_ID`), so any machine can fetch the model of any run. Offline, W&B
        keeps it with the run and `wandb sync` uploads it. A file W&B refuses costs a warning."""
        if self.run is None:
            return
        try:
            artifact = self.wandb.Artifact(MODEL_ARTIFACT, type="model", metadata=dict(metadata or {}))
            artifact.add_file(str(path), name=MODEL_FILE)
            self.run.log_artifact(artifact, aliases=[run_id])
        except Exception as e:   # a side output: the run's results stand without it
            print(f"warning: the model could not be logged to W&B as an artifact ({type(e).__name__}: "
                  f"{str(e)[:200]})", file=sys.stderr, flush=True)

    def mark_preempting(self):
        """W&B's preemption convention: the run asks to be requeued (it exits non-zero next)."""
        if self.run is not None:
            try:
                self.run.mark_preempting()
            except Exception as e:   # an older wandb, or a run W&B no longer serves
                print(f"warning: could not mark the W&B run preempting ({type(e).__name__}: {str(e)[:160]})",
                      file=sys.stderr, flush=True)

    def finish(self, state, summary=None, confusion=None, exit_code=0):
        if self.run is None:
            return
        if confusion is not None:
            y_true, y_pred, class_names = confusion
            self.wandb.log({"confusion_matrix": self.wandb.plot.confusion_matrix(
                y_true=np.asarray(y_true).tolist(), preds=np.asarray(y_pred).tolist(), class_names=list(class_names))})
        for key, value in (summary or {}).items():
            if key == "confusion_matrix":      # W&B's key is the plot above; the counts go beside it
                self.run.summary[CONFUSION_COUNTS] = value
            else:
                self.run.summary[key] = value
        self.run.summary["state"] = state
        self.wandb.finish(exit_code=exit_code)
        self.run = None


# ---- local store ----------------------------------------------------------------------------

class StoreTracker:
    """The run's row in the SQLite store.

    `claim` decides the run's identity once: under `mlp agent` the row already exists (pending,
    made by the agent under WANDB_RUN_ID, carrying its sweep and proposed parameters) and is
    adopted; under `wandb agent` (WANDB_SWEEP_ID set) the row is created under that W&B sweep,
    whose row is created on first sight; otherwise a standalone row under a new id.
    """

    def __init__(self, store, run_id, sweep_id=None, adopted=False, context=None):
        self.store, self.run_id, self.sweep_id, self.adopted = store, run_id, sweep_id, adopted
        self.context = context
        self.open = self.warned = False

    @classmethod
    def resume(cls, store, run_id):
        """The row of an interrupted run that continues (mlp.runs.experiment.resumption checked it)."""
        existing = store.get_run(run_id)
        return cls(store, run_id, existing["sweep_id"], adopted=True, context=None)

    def stopped_by(self):
        """Whether the run's agent recorded that it stopped the run early (hyperband), before it
        signalled it; None when not, or when the store cannot say."""
        try:
            return self.store.get_run(self.run_id)["stopped_by"]
        except StoreError:
            return None

    @classmethod
    def claim(cls, store, context):
        if context.run_id:
            existing = store.find_run(context.run_id)
            if existing is not None:
                if existing["state"] != "pending":
                    raise UsageError(f"run id {context.run_id} (WANDB_RUN_ID) is already in store {store.path} as a "
                                     f"{existing['state']} run; unset WANDB_RUN_ID or use another --store")
                return cls(store, context.run_id, existing["sweep_id"], adopted=True, context=context)
        return cls(store, context.run_id or new_id(), context.sweep_id, adopted=False, context=context)

    def start(self, config, name, wandb_dir=None, where=(None, None)):
        """Record the run as running; `where`: the (entity, project) it logs to in W&B."""
        entity, project = where
        if self.adopted:
            self.store.update_run(self.run_id, config=config, name=name, wandb_entity=entity, wandb_project=project)
            self.store.start_run(self.run_id, pid=os.getpid(), wandb_dir=wandb_dir)
        else:
            self.store.create_run(config, sweep_id=self.sweep_id, name=name, state="running", pid=os.getpid(),
                                  wandb_dir=wandb_dir, run_id=self.run_id, wandb_entity=entity, wandb_project=project,
                                  wandb_sweep=self._wandb_sweep(self.context, entity, project) if self.sweep_id else None)
            if self.sweep_id:   # a local sweep synced as this W&B sweep takes the run in
                self.sweep_id = self.store.get_run(self.run_id)["sweep_id"]
        self.open = True
        return self.run_id

    def _wandb_sweep(self, context, entity=None, project=None):
        return {"entity": getattr(context, "entity", None) or entity,
                "project": getattr(context, "project", None) or project,
                "params": dict(getattr(context, "sweep_params", {}) or {})}

    def log(self, row):
        """One epoch into the store. If the store fails (disk full, damaged), say so once and go
        on: the run keeps training and logging to W&B, and its final record is retried at the end."""
        try:
            self.store.log_history(self.run_id, row)
        except StoreError as e:
            if not self.warned:
                print(f"warning: {e}; training goes on", file=sys.stderr, flush=True)
                self.warned = True

    def finish(self, state, summary=None, exit_code=0, error=None, model_path=None, stopped_by=None):
        self.store.finish_run(self.run_id, state, summary=summary, exit_code=exit_code, error=error,
                              model_path=model_path, stopped_by=stopped_by)
        self.open = False
