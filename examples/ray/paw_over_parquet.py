"""Run a paw program over a Parquet file with Ray Data: one interpreter loaded per worker.

    python paw_over_parquet.py PROGRAM IN.parquet OUT.parquet [--column text] [--workers 2]

Give Ray more CPU slots than workers (the reads and writes need one). PROGRAM is what
`paw.function` takes (an id, a unique id prefix, a path, or a name in
./paw.lock). Every worker needs the program and its interpreter in its store ($PAW_HOME, else
~/.cache/paw). The output holds every input column plus `output`. Ray writes one file per
block and does not promise which file holds which rows, so keep an id column in the input
when the order matters and sort on it after reading.
"""

import argparse

import paw
import ray


class PawBatch:
    """One per Ray worker (an actor): the interpreter is loaded once, in __init__."""

    def __init__(self, program, column):
        self.function = paw.function(program)
        self.column = column

    def __call__(self, batch):
        batch["output"] = self.function.batch([str(text) for text in batch[self.column]])
        return batch


def run(program, source, destination, column="text", workers=1, batch_size=32, blocks=None):
    """Reads `source` (in `blocks` blocks: default, Ray's choice), answers every row's `column`
    with `program`, writes `destination`."""
    dataset = ray.data.read_parquet(source, override_num_blocks=blocks)
    answered = dataset.map_batches(
        PawBatch,
        fn_constructor_args=(program, column),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=workers,
        # Each worker is one CPU slot; keep fewer workers than slots, or the reads and writes
        # wait forever for a free one.
        num_cpus=1,
    )
    answered.write_parquet(destination)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument("--column", default="text")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    ray.init()
    run(args.program, args.source, args.destination, args.column, args.workers, args.batch_size)


if __name__ == "__main__":
    main()
