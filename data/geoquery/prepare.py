"""GeoQuery (Zelle & Mooney 1996) in FunQL, with the compositional splits of Shaw et al. (2021):
standard, template, TMCD and length (and Qiu et al. 2022's csl_* versions with a dev set).

Upstream ships only the raw corpus, geobase and lists of example ids, so this script does the
preprocessing of Shaw et al. (2021) itself, following the steps of their write_dataset.py:
  1. utterance: lower-cased, a trailing '?' / '.' and spaces stripped, every " '" removed;
     FunQL: quotes removed, spacing around commas removed;
  2. FunQL normalized: `state(all)` -> `state`, `city(X)` -> `intersection(city,X)`,
     `largest_one(population_1(X))` -> `largest_one(population_1,X)`, ...;
  3. entities anonymized: geobase entities found in the FunQL (longest identifier first) whose
     alias (longest first) occurs in the utterance become m0, then m1, in both;
  4. FunQL tokens separated by spaces.
Line k of all.tsv is example id k; each split file lists ids per part.

    python data/geoquery/prepare.py        # writes data/geoquery/{all.tsv,standard/,template/,...}
"""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, Source, UserError, code_version, task_main, write_atomic, write_recorded  # noqa: E402

RAW = {  # mirror file -> (upstream URL, sha256 of the verified copy)
    "raw/corpus.xml": ("https://raw.githubusercontent.com/rknaebel/grammar_induction/"
                       "5abf3035d17d6378bf52ce5b80a051387bb7d4fc/data/corpus.xml",
                       "996685c34cdfbab5165f299abe1a9f6fc51d65efa87b402caf17db9acafbc539"),
    "raw/geobase.pl": ("https://raw.githubusercontent.com/alban-petit/geoquery-funql-executor/"
                       "ae3883ecad7f7b9aee72d67fbd804f80ea128c1c/geobase.pl",
                       "7833fc807b9bb4d1191ea8874148877b73c3e0ad36c78f3f05f626127d2bc282"),
}
_SPLITS_URL = "https://raw.githubusercontent.com/google-research/language/865fae65f63ef7e6b2989d4ff8b47f61750415a8/language/compgen/"
SPLITS = {  # our name -> (mirror file, upstream URL)
    "standard": ("split_ids/nqg_standard.json", _SPLITS_URL + "nqg/tasks/geoquery/splits/standard.json"),
    "template": ("split_ids/nqg_template_1.json", _SPLITS_URL + "nqg/tasks/geoquery/splits/template_1.json"),
    "tmcd": ("split_ids/nqg_tmcd_1.json", _SPLITS_URL + "nqg/tasks/geoquery/splits/tmcd_1.json"),
    "length": ("split_ids/nqg_length_1.json", _SPLITS_URL + "nqg/tasks/geoquery/splits/length_1.json"),
    **{f"csl/{n}": (f"split_ids/csl_{n}.json", _SPLITS_URL + f"csl/tasks/geoquery/splits/{n}.json")
       for n in ("template_1", "template_2", "template_3", "tmcd_1", "tmcd_2", "tmcd_3", "length")},
}
SPLIT_SHA256 = {  # of the verified copies, byte-identical to upstream at that commit
    "split_ids/nqg_standard.json": "e05d48357694bfa7ce9b9257cc05aa413dc843b483af8b1a462f30cbebe8fbc8",
    "split_ids/nqg_template_1.json": "7549bcc721ac8102de5a513baab5d3d4f438033a552328ddfe7c0284929ab9e0",
    "split_ids/nqg_tmcd_1.json": "49f83b36d7b9c468b3a98c52356e9d8b337d40c420e982e1e1db40abedea7a9e",
    "split_ids/nqg_length_1.json": "7908c912927f20f692c3edb102d6bc944652d0345a2f51682f3b7ed703973be4",
    "split_ids/csl_template_1.json": "754c79278ce1beeeab03f6e627e425fe7f1d8977a1f55edaff67396ae4adb795",
    "split_ids/csl_template_2.json": "37718b1315afc1aaed9e272f4eae3ff53ee309de29aad02197bed65d9ad999f4",
    "split_ids/csl_template_3.json": "ff066cefe85c6d8b08771764650c500ca8b467a5011ba551cab666632d52d8f6",
    "split_ids/csl_tmcd_1.json": "ca1612c00ab8de1ea62a5b18bd54dff8255bfb35e33c7c65fd681593fc083955",
    "split_ids/csl_tmcd_2.json": "d334725fce0c014551fe47d8d708f266bd6987279f30c99b1ca336413a863b27",
    "split_ids/csl_tmcd_3.json": "49793305f646a1cd9993f65e91cdd53292219d4e3285dc6db598093a4049bec6",
    "split_ids/csl_length.json": "bfe1ea81769f9f8c424a77e907b6e57b0dfae66482b97a73301f51dc3e07a3b4",
}

# --- step 1: the corpus ---------------------------------------------------------------------------


def clean_utterance(text):
    return text.lower().rstrip("?").rstrip(".").rstrip().replace(" '", "")


def clean_funql(text):
    text = text.replace("'", "")
    for old in (",  ", ", ", " ,"):
        text = text.replace(old, ",")
    return text


def read_corpus(xml_text):
    """(utterance, funql) for each <example>, in file order."""
    pairs = []
    for ex in ET.fromstring(xml_text):
        nl = [e.text for e in ex.findall("nl") if e.get("lang") == "en"]
        mrl = [e.text for e in ex.findall("mrl") if e.get("lang") == "geo-funql"]
        if not nl or not mrl:
            raise UserError(f"corpus.xml example {ex.get('id')}: no English <nl> or geo-funql <mrl>")
        pairs.append((clean_utterance(nl[0].strip()), clean_funql(mrl[0].strip())))
    return pairs


# --- step 2: FunQL normalization -----------------------------------------------------------------

RELATIONS = {"area_1", "capital_1", "capital_2", "density_1", "elevation_1", "elevation_2",
             "high_point_1", "high_point_2", "higher_2", "loc_1", "loc_2", "low_point_1",
             "low_point_2", "lower_2", "next_to_1", "next_to_2", "population_1", "traverse_1",
             "traverse_2", "longer", "len", "size"}
UNARY = {"capital", "city", "lake", "major", "mountain", "place", "river", "state"}  # take `all`
ENTITY_FUNCTIONS = {"cityid", "stateid", "riverid", "placeid", "countryid"}
# functions whose single argument nests arity-1 relation calls to be pulled up as arguments
NESTED_ARITY = {**{f: 1 for f in ("largest", "smallest", "highest", "lowest", "longest", "shortest",
                                  "count", "sum")},
                "largest_one": 2, "smallest_one": 2, "most": 3, "fewest": 3}


def split_call(expr):
    """'f(a,g(b,c))' -> ('f', ['a', 'g(b,c)']): top-level arguments, leading spaces dropped."""
    expr = expr.strip()
    i = expr.find("(")
    if i < 0 or not expr.endswith(")"):
        raise ValueError(f"not a FunQL call: {expr}")
    args, cur, depth = [], "", 0
    for ch in expr[i + 1:-1]:
        if ch == "," and depth == 0:
            args.append(cur)
            cur = ""
            continue
        if ch == " " and not cur:
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    return expr[:i], args + [cur]


def normalize(expr):
    if expr == "0":  # sea level
        return expr
    name, args = split_call(expr)
    if name in ENTITY_FUNCTIONS:
        return expr
    if name == "intersection" or name == "exclude":
        if len(args) != 2:
            raise ValueError(expr)
        return f"{name}({normalize(args[0])},{normalize(args[1])})"
    if len(args) != 1:
        raise ValueError(expr)
    (arg,) = args
    if name == "answer" or name in RELATIONS:
        return f"{name}({normalize(arg)})"
    if name in UNARY:
        return name if arg == "all" else f"intersection({name},{normalize(arg)})"
    if name in NESTED_ARITY:
        pulled = []
        for _ in range(NESTED_ARITY[name] - 1):
            inner, inner_args = split_call(arg)
            if len(inner_args) != 1:
                raise ValueError(expr)
            pulled.append(inner)
            arg = inner_args[0]
        return f"{name}({','.join(pulled + [normalize(arg)])})"
    raise ValueError(f"unknown FunQL function {name}")


def space_tokens(funql):
    out, cur = [], ""
    for ch in funql:
        if ch in "(),":
            if cur:
                out.append(cur)
            out.append(ch)
            cur = ""
        else:
            cur += ch
    return " ".join(out + ([cur] if cur else []))


# --- step 3: entities ------------------------------------------------------------------------------

def load_entities(geobase_text):
    """{identifier: aliases} in geobase order, as Shaw et al. collect them."""
    ents = {}

    def add(identifier, aliases):
        ents.setdefault(identifier, aliases)

    def city(name, state, abbr):
        add(f"cityid('{name}',_)", [name])
        add(f"cityid('{name}','{abbr}')", [f"{name} {state}", f"{name} {abbr}"])

    for line in geobase_text.splitlines():
        q = line.split("'")
        if line.startswith("state"):
            add(f"stateid('{q[1]}')", [q[1]])
            for c in (q[5], q[7], q[9], q[11], q[13]):
                city(c, q[1], q[3])
        elif line.startswith("city"):
            city(q[5], q[1], q[3])
        elif line.startswith("river"):
            add(f"riverid('{q[1]}')", [q[1]])
        elif line.startswith("mountain"):
            add(f"placeid('{q[5]}')", [q[5]])
        elif line.startswith("highlow"):
            add(f"placeid('{q[5]}')", [q[5]])
            add(f"placeid('{q[7]}')", [q[7]])
    city("springfield", "south dakota", "sd")  # in a train query, not in geobase
    add("countryid(usa)", ["america", "continental us", "united states", "us", "usa", "country"])
    return ents


def anonymize(funql, utterance, entities):
    """Replace up to two entities by m0, m1 in both the FunQL and the utterance."""
    for identifier in sorted(entities, key=len, reverse=True):  # stable: ties keep geobase order
        ident = identifier.replace("'", "")
        if ident not in funql:
            continue
        marker = "m1" if "m0" in utterance else "m0"
        tokens = utterance.split(" ")
        for alias in sorted(entities[identifier], key=len, reverse=True):
            a = alias.split(" ")
            hit = next((i for i in range(len(tokens)) if tokens[i:i + len(a)] == a), None)
            if hit is not None:
                utterance = " ".join(tokens[:hit] + [marker] + tokens[hit + len(a):])
                funql = funql.replace(ident, marker)
                break
    return funql, utterance


def build(xml_text, geobase_text):
    entities = load_entities(geobase_text)
    rows = []
    for utterance, funql in read_corpus(xml_text):
        funql, utterance = anonymize(normalize(funql), utterance, entities)
        rows.append((utterance, space_tokens(funql)))
    return rows


# --- writing -----------------------------------------------------------------------------------------

def write_tsv(path, rows, files, folder):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_recorded(path, "".join(f"{u}\t{f}\n" for u, f in rows), files, folder)


def prepare(out_dir=DATA / "geoquery"):
    out_dir = Path(out_dir)
    records, written = [], {}
    texts = {}
    for name, (url, sha) in RAW.items():
        raw, rec = Source("geoquery", name, url, sha).read_all()
        texts[name] = raw.decode("utf-8")
        records.append(rec)
    rows = build(texts["raw/corpus.xml"], texts["raw/geobase.pl"])
    write_tsv(out_dir / "all.tsv", rows, written, out_dir)
    for split, (name, url) in SPLITS.items():
        raw, rec = Source("geoquery", name, url, SPLIT_SHA256[name]).read_all()
        records.append(rec)
        ids = json.loads(raw)
        if sorted(i for part in ids.values() for i in part) != list(range(len(rows))):
            raise UserError(f"{name}: the ids do not cover examples 0-{len(rows) - 1} once each")
        for part, idx in ids.items():
            write_tsv(out_dir / split / f"{part}.tsv", [rows[i] for i in idx], written, out_dir)
    write_atomic(out_dir / "meta.json", json.dumps(
        {"name": "geoquery", "sources": records, "examples": len(rows), "splits": list(SPLITS),
         "files": written, "code_version": code_version()}, indent=2) + "\n")
    print(f"geoquery: {len(rows)} examples, splits {', '.join(SPLITS)} -> {out_dir}")
    return rows


if __name__ == "__main__":
    task_main(__doc__, "geoquery", prepare)
