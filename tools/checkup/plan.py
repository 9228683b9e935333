"""What the selftest runs: its stages (what each checks, what it needs, how long it may take), the sizes of
a quick and a default run, and where the stages leave their files. `tools/checkup/run.py` runs the plan.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.atomic import write_atomic

@dataclass(frozen=True)
class StageSpec:
    """One stage.

    Attributes:
        name: its name in the table, the JSON and --only.
        checks: what it checks, in a few words (docs, --help, selftest.md).
        gpu: runs only where torch sees a CUDA device ("n/a (no CUDA device)" elsewhere).
        needs: stages whose files it reads (run before it; --only adds them).
        flag: the option that asks for it (None: always run).
        seconds: (quick, default CPU, GPU) estimate used by --budget: a stage that no longer fits is skipped.
        limit: (quick, default CPU, GPU) time limit; the stage and its children are killed after it.
    """

    name: str
    checks: str
    gpu: bool = False
    needs: tuple[str, ...] = ()
    flag: str | None = None
    seconds: tuple[float, float, float] = (10, 30, 20)
    limit: tuple[float, float, float] = (120, 300, 180)


# seconds: measured on 2 idle cores (quick, default) and planned for a 16-core GPU machine; limits leave room
# for slow or shared machines.
STAGES = (
    StageSpec("environment", "Python, torch (CUDA, cuDNN, GPUs, driver), DALI and its build, CPUs",
              seconds=(5, 5, 10), limit=(60, 60, 90)),
    StageSpec("data", "generated ImageNet-like JPEGs (and odd files) -> prepare, prepare --resize 256; "
              "nvJPEG buffers sized from the data", seconds=(8, 40, 35), limit=(180, 600, 180)),
    StageSpec("dali-gpu", "DALI's GPU operators and nvJPEG's hardware JPEG decoder", gpu=True, needs=("data",),
              seconds=(25, 25, 25), limit=(120, 120, 120)),
    StageSpec("pca-cpu", "compute-pca with the PIL and the DALI backend agree", needs=("data",),
              seconds=(5, 10, 10), limit=(180, 300, 120)),
    StageSpec("pca-gpu", "compute-pca on the GPU agrees with the CPU", gpu=True, needs=("data",),
              seconds=(25, 25, 25), limit=(150, 150, 150)),
    StageSpec("pipelines-cpu", "train / val / 10-crop graphs on the CPU against NumPy", needs=("data",),
              seconds=(5, 10, 12), limit=(180, 300, 120)),
    StageSpec("pipelines-gpu", "the same graphs on the GPU; GPU vs CPU differences; memory", gpu=True,
              needs=("data",), seconds=(30, 30, 30), limit=(180, 180, 180)),
    StageSpec("shards", "pack + prepare webdataset shards; their val tensors equal the files', train as NumPy's",
              needs=("data",), seconds=(10, 15, 15), limit=(180, 300, 120)),
    StageSpec("model-cpu", "alexnet, alexnet_owt: fp32, bf16, channels_last; towers; 2-process DDP (gloo)",
              seconds=(35, 50, 25), limit=(300, 600, 240)),
    StageSpec("model-gpu", "the same on the GPU, against the CPU; towers and DDP on the GPU", gpu=True,
              seconds=(40, 40, 40), limit=(240, 240, 240)),
    StageSpec("train", "model.train --dali lowers the loss; -e --ten-crop; --resume continues exactly",
              needs=("data",), seconds=(50, 150, 60), limit=(600, 1200, 300)),
    StageSpec("compile", "torch.compile: compile time, recompilations (eval, a new batch size)", flag="--compile",
              seconds=(150, 200, 90), limit=(900, 1200, 300)),
    # bench on a GPU: 5 modes x 2 data sets of 70 batches of 256, the DataLoader's 16 spawned workers started
    # 4 times (~10 s each): ~2 x 75 s.
    StageSpec("bench", "the default-configuration bench and the project's targets", flag="--bench", needs=("data",),
              seconds=(60, 120, 150), limit=(900, 1200, 300)),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


@dataclass(frozen=True)
class Sizes:
    """How much work each stage does in one kind of run."""

    bench_train: int  # generated ImageNet-like training JPEGs (the data stage); validation: a quarter
    classes: int  # classes of the training stage's set (make-demo-data: shapes that can be learnt)
    train_per_class: int
    val_per_class: int
    batch: int  # pipelines and training
    epochs: int
    model_batch: int  # forward/backward checks (per DDP rank)
    bench_batch: int  # --bench, on the data stage's files, linked as often as an epoch needs (throughput.py)
    bench_steps: int


SIZES = {
    "quick": Sizes(24, 3, 4, 1, 4, 2, 1, 8, 2),
    "default": Sizes(120, 3, 16, 4, 8, 4, 2, 32, 5),
    "gpu": Sizes(768, 3, 64, 16, 32, 4, 16, 256, 60),
}


@dataclass(frozen=True)
class Settings:
    """What every stage reads: the run's choices (settings.json in the work folder).

    Attributes:
        quick: the CPU-sized run CI executes.
        device: "cpu" or "gpu": where training, --compile and --bench run.
        cuda: torch sees a CUDA device (the GPU stages run).
        workers: DALI threads, DataLoader workers, processes.
        work: the folder of the generated data, lists, runs and stage results.
        inject: stage -> "fail" | "crash" | "hang" (tests: a stage that raises, dies, or never ends).
        out: the --out folder (the bench stage writes bench.json there as it goes).
    """

    quick: bool
    device: str
    cuda: bool
    workers: int
    work: str
    inject: dict = field(default_factory=dict)
    out: str = ""

    @property
    def sizes(self) -> Sizes:
        return SIZES["quick" if self.quick else "gpu" if self.device == "gpu" else "default"]

    @property
    def kind(self) -> int:
        """Index into StageSpec.seconds / limit: 0 quick, 1 default CPU, 2 GPU."""
        return 0 if self.quick else 2 if self.device == "gpu" else 1

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Settings":
        return cls(**json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class WorkPaths:
    """Where the stages leave and find their files, under the work folder."""

    root: Path

    @property
    def bench(self) -> Path:
        """Generated ImageNet-like JPEGs (make-bench-data) and a few odd files, ImageFolder layout."""
        return self.root / "bench"

    @property
    def bench_lists(self) -> Path:
        """prepare's lists of `bench` as they are (full-size files: the graphs resize them)."""
        return self.root / "bench_lists"

    @property
    def bench256(self) -> Path:
        """prepare --resize 256's copy of `bench` (the graphs skip the resize)."""
        return self.root / "bench256"

    @property
    def bench_lists256(self) -> Path:
        return self.root / "bench_lists256"

    @property
    def shapes(self) -> Path:
        """make-demo-data's classes (learnable, unlike `bench`'s labels), for the training stage."""
        return self.root / "shapes"

    @property
    def shapes256(self) -> Path:
        return self.root / "shapes256"

    @property
    def shapes_lists(self) -> Path:
        return self.root / "shapes_lists"

    def stage_dir(self, stage: str) -> Path:
        """A stage's own files (runs, pca.json files, bench data)."""
        return self.root / stage

    def result(self, stage: str) -> Path:
        """The stage's result, written by its process after every check."""
        return self.root / "results" / f"{stage}.json"
