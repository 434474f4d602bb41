"""SCAN (Lake & Baroni 2018): commands -> action sequences (not in the paper; an extra).
Four upstream splits: simple (random), length, add-primitive (jump, turn left) and template
(around right). Writes data/scan/<split>_train.tsv and <split>_test.tsv.

    python data/scan/prepare.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, prepare_pairs, task_main  # noqa: E402

URL = "https://raw.githubusercontent.com/brendenlake/SCAN/c4b756cbc010d75c912f16c42c8f15dc6b7e6c8f/"
FILES = {  # split: (upstream path, sha256 of the upstream file at that commit)
    "simple_train": ("simple_split/tasks_train_simple.txt", "941bb8a088c5f53ceff12fde902dc008933cf0c4203cc672c47b5f79d73262dd"),
    "simple_test": ("simple_split/tasks_test_simple.txt", "1fe1c8f5a19d0dc40e41bab94278f45f66f3dc415a978bd29855a23440610fc6"),
    "length_train": ("length_split/tasks_train_length.txt", "b034212dc7cf87ce62f3a067dd6ad49c4d5cd18d51d615d13825516bcb1ebbc2"),
    "length_test": ("length_split/tasks_test_length.txt", "0760752ed34a75116ae11dcc1ee17526b7500060da1366540730fa24894d7db3"),
    "addprim_jump_train": ("add_prim_split/tasks_train_addprim_jump.txt", "e3c78485692e028eed4205e1b8b3fd0e785ef2c12d45b5b89204dadf5b239e23"),
    "addprim_jump_test": ("add_prim_split/tasks_test_addprim_jump.txt", "8147ae2651422c701162e174d9d66158daa57858a26b30317ac61797118ac7a5"),
    "addprim_turn_left_train": ("add_prim_split/tasks_train_addprim_turn_left.txt", "1b3fed86055dd7689d217f1b90cc8960aeb1cf200f4f209dc47935761b05304c"),
    "addprim_turn_left_test": ("add_prim_split/tasks_test_addprim_turn_left.txt", "15a82c2d25ac7c3c1fff7e18051fb085974ef3617de895c520d02144396a10e2"),
    "template_around_right_train": ("template_split/tasks_train_template_around_right.txt", "d5d35d174d557645fc61f289424afa0d95fde21422c59a9819e2d0fcfa9d419f"),
    "template_around_right_test": ("template_split/tasks_test_template_around_right.txt", "fc78a5d1077dc2c206d6c42ed89fb9022867618c3f331179bafd3ec1ca699474"),
}


def parse(line):
    if not line.startswith("IN: ") or " OUT: " not in line:
        raise ValueError("expected 'IN: <command> OUT: <actions>'")
    src, tgt = line[4:].split(" OUT: ", 1)
    return src.strip(), tgt.strip(), "scan"


def prepare(out_dir=DATA / "scan"):
    return prepare_pairs("scan", URL, FILES, parse, out_dir)


if __name__ == "__main__":
    task_main(__doc__, "scan", prepare)
