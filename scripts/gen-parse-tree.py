#!/usr/bin/env python3
"""Generates src/sql/reader/nodes.rs: Rust that reads libpg_query's C parse tree straight into
the pg_query crate's Rust types, without the protobuf round trip (encode in C, decode in Rust)
that was most of `migrate plan`'s time.

What it reads, all from the pg_query crate the build links (its version is in Cargo.lock):
  - libpg_query's src/include/pg_query_outfuncs_defs.c: each node type's fields as its protobuf
    writer emits them (C field, protobuf field, kind);
  - src/include/pg_query_outfuncs_conds.c: which node tag is which type;
  - src/include/pg_query_enum_defs.c: each C enum's value -> protobuf value;
  - src/protobuf.rs: the Rust types those fields decode into;
  - the C headers, through a probe program compiled with cc and run here: every field's offset
    and size, every node tag's value, the List and value nodes' layouts.
The generated file records the pg_query version it was made from; a test fails when Cargo.lock
holds another, and tests/parse_tree.rs compares both readers' trees on real SQL.

Run after upgrading pg_query:  scripts/gen-parse-tree.py  (then cargo test)
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "sql", "reader", "nodes.rs")


def crate_dir():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--manifest-path",
         os.path.join(ROOT, "Cargo.toml")], check=True, capture_output=True, text=True).stdout)
    for pkg in meta["packages"]:
        if pkg["name"] == "pg_query":
            return os.path.dirname(pkg["manifest_path"]), pkg["version"]
    sys.exit("pg_query is not a dependency")


def read(path):
    with open(path) as f:
        return f.read()


# ---- libpg_query's own tables -------------------------------------------------------------

def out_functions(defs):
    """{c_name: (proto message, C struct, [(kind, args...)])} from pg_query_outfuncs_defs.c."""
    funcs = {}
    pat = re.compile(r"^_out(\w+)\(OUT_TYPE\((\w+), (\w+)\) out, const (\w+) \*node\)\n\{\n(.*?)^\}",
                     re.M | re.S)
    for m in pat.finditer(defs):
        c_name, proto, _, struct, body = m.groups()
        fields = []
        for w in re.finditer(r"WRITE_(\w+?)_FIELD\(([^)]*)\);", body):
            kind, args = w.group(1), [a.strip() for a in w.group(2).split(",")]
            fields.append((kind, args))
        funcs[c_name] = (proto, struct, fields)
    return funcs


def node_cases(conds):
    """[(tag name, oneof field, c_name, cast struct)] from pg_query_outfuncs_conds.c."""
    return [(m.group(1), m.group(7), m.group(3), m.group(6)) for m in re.finditer(
        r"case T_(\w+):\n\s*OUT_NODE\((\w+), (\w+), (\w+), (\w+), (\w+), (\w+)\);", conds)]


def enum_cases(enum_defs):
    """{enum type: [C enumerator]} from the _enumToInt functions of pg_query_enum_defs.c."""
    out = {}
    for m in re.finditer(r"_enumToInt(\w+)\(\w+ value\) \{\n\s*switch\(value\) \{\n(.*?)\n\s*\}",
                         enum_defs, re.S):
        out[m.group(1)] = re.findall(r"case (\w+): return", m.group(2))
    return out


# ---- the Rust side: pg_query's prost types ------------------------------------------------

def upper_camel(name):
    """prost's (heck's) UpperCamelCase of a protobuf name."""
    words = []
    for part in name.split("_"):
        words += re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+", part)
    return "".join(w[0].upper() + w[1:].lower() for w in words if w)


RUST_KEYWORDS = {"type", "fn", "match", "mod", "ref", "self", "struct", "use", "where", "as", "in",
                 "loop", "move", "box", "override", "final", "do", "abstract", "macro", "virtual"}


def rust_field(name):
    return "r#" + name if name in RUST_KEYWORDS else name


def prost_types(protobuf_rs):
    """({struct: {field: type}}, {NodeEnum variant: (struct, boxed)})."""
    structs, variants = {}, {}
    text = re.sub(r"\n\s*///[^\n]*", "", protobuf_rs)
    for m in re.finditer(r"pub struct (\w+) \{(?:\}|(.*?)\n\})", text, re.S):
        body = re.sub(r"\s+", " ", m.group(2) or "")
        structs[m.group(1)] = {f: re.sub(r"\s+", "", t).replace(",>", ">") for f, t in
                               re.findall(r"pub ((?:r#)?\w+): (.*?),(?= #\[| pub |\s*$)", body)}
    node = re.sub(r"\s+", "", re.search(r"pub enum Node \{(.*?)\n    \}", text, re.S).group(1))
    for v, boxed, ty in re.findall(
            r"(\w+)\((::prost::alloc::boxed::Box<)?super::(\w+)>?,?\)", node):
        variants[v] = (ty, bool(boxed))
    return structs, variants


# ---- the C side: a probe compiled against the headers --------------------------------------

SPECIAL = {  # value nodes and lists, written by hand in pg_query_outfuncs_protobuf.c
    "List": ["length", "elements"], "Integer": ["ival"], "Float": ["fval"],
    "Boolean": ["boolval"], "String": ["sval"], "BitString": ["bsval"],
    "A_Const": ["isnull", "location", "val"], "Bitmapset": ["nwords", "words"],
    "RawStmt": ["stmt"],
}


def probe(lib, funcs, cases, enums):
    lines = ['#include "postgres.h"', '#include "access/relation.h"', '#include "nodes/parsenodes.h"',
             '#include "nodes/plannodes.h"', '#include "nodes/value.h"', '#include "nodes/bitmapset.h"',
             '#include "pg_query_enum_defs.c"', "#include <stdio.h>", "#include <stddef.h>", "#undef printf",
             "#define SIGNED(x) ((__typeof__(x))-1 < 0)",
             "int main(void) {",
             'printf("V %d\\n", PG_VERSION_NUM);',
             'printf("S ListCell %zu\\n", sizeof(ListCell));']
    for struct in ("Integer", "Float", "Boolean", "String", "BitString", "A_Const", "RawStmt"):
        lines.append(f'printf("Z {struct} %zu\\n", sizeof({struct}));')
    for struct, fields in SPECIAL.items():
        for f in fields:
            # Bitmapset.words is a flexible array: its element's size stands in.
            size = "sizeof(bitmapword)" if f == "words" else f"sizeof((({struct}*)0)->{f})"
            lines.append(f'printf("F {struct} {f} %zu %zu 0\\n", offsetof({struct}, {f}), {size});')
    for tag, _, _, _ in cases:
        lines.append(f'printf("T {tag} %d\\n", (int) T_{tag});')
    for c_name, (_, struct, fields) in funcs.items():
        lines.append(f'printf("Z {struct} %zu\\n", sizeof({struct}));')
        for kind, args in fields:
            f = args[-1]
            signed = f"SIGNED((({struct}*)0)->{f})" if kind in ("INT", "UINT") else "0"
            lines.append(f'printf("F {struct} {f} %zu %zu %d\\n", offsetof({struct}, {f}), '
                         f'sizeof((({struct}*)0)->{f}), (int) {signed});')
    for enum, labels in enums.items():
        for label in labels:
            lines.append(f'printf("E {enum} %d %d\\n", (int) {label}, _enumToInt{enum}({label}));')
    lines += ["return 0;", "}"]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        includes = [os.path.join(lib, d) for d in
                    (".", "vendor", "src/postgres/include", "src/include")]
        subprocess.run([os.environ.get("CC", "cc"), "-w", "-o", exe, src] +
                       [f"-I{d}" for d in includes], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    version, tags, layout, enum_values, listcell, sizes = None, {}, {}, {}, None, {}
    for line in out.splitlines():
        p = line.split()
        if p[0] == "V":
            version = int(p[1])
        elif p[0] == "S":
            listcell = int(p[2])
        elif p[0] == "T":
            tags[p[1]] = int(p[2])
        elif p[0] == "Z":
            sizes[p[1]] = int(p[2])
        elif p[0] == "F":
            layout[(p[1], p[2])] = (int(p[3]), int(p[4]), p[5] == "1")
        elif p[0] == "E":
            enum_values.setdefault(p[1], []).append((int(p[2]), int(p[3])))
    assert listcell == 8, "a ListCell is expected to be one pointer wide"
    return version, tags, layout, enum_values, sizes


# A view's or a CREATE TABLE AS's defining query: read only when the caller asks for it.
DEFINING_QUERIES = {("ViewStmt", "query"), ("CreateTableAsStmt", "query")}


# ---- generation ---------------------------------------------------------------------------

def snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", upper_camel(name)).lower()


def main():
    crate, version = crate_dir()
    lib = os.path.join(crate, "libpg_query")
    inc = os.path.join(lib, "src", "include")
    funcs = out_functions(read(os.path.join(inc, "pg_query_outfuncs_defs.c")))
    cases = node_cases(read(os.path.join(inc, "pg_query_outfuncs_conds.c")))
    enums = enum_cases(read(os.path.join(inc, "pg_query_enum_defs.c")))
    structs, variants = prost_types(read(os.path.join(crate, "src", "protobuf.rs")))
    pg_version, tags, layout, enum_values, sizes = probe(lib, funcs, cases, enums)
    tag_of = {c_name: tags[tag] for tag, _, c_name, _ in cases}

    used_enums, defaulted = set(), set()
    fns = []
    for c_name, (proto, struct, fields) in funcs.items():
        rust = upper_camel(proto)
        if rust not in structs:
            sys.exit(f"{proto}: no Rust type {rust} in pg_query's protobuf.rs")
        want = structs[rust]
        body, covered, wbody = [], set(), []
        for kind, args in fields:
            c_field = args[-1]
            out = args[3] if kind.startswith("SPECIFIC_NODE") else args[2] if kind == "ENUM" else args[1]
            rf = rust_field(out)
            if rf not in want:
                sys.exit(f"{proto}.{out}: not a field of {rust}")
            covered.add(rf)
            ty = want[rf]
            off, size, signed = layout[(struct, c_field)]
            n = f"n.{rf}"
            if kind in ("INT", "UINT"):
                c_ty = {(4, True): "i32", (2, True): "i16", (4, False): "u32", (2, False): "u16"}[(size, signed)]
                wbody.append(f"    w.put::<{c_ty}>(p, {off}, {n} as {c_ty});")
            elif kind in ("UINT64", "LONG", "FLOAT", "BOOL"):
                wbody.append(f"    w.put(p, {off}, {n});")
            elif kind == "CHAR":
                wbody.append(f"    w.put_char(p, {off}, &{n});")
            elif kind == "STRING":
                wbody.append(f"    w.put_str(p, {off}, &{n});")
            elif kind == "ENUM":
                wbody.append(f"    w.put::<i32>(p, {off}, c_enum_{snake(args[1])}({n}));")
            elif kind == "LIST":
                wbody.append(f"    w.put_list(p, {off}, &{n});")
            elif kind == "NODE_PTR":
                wbody.append(f"    w.put_node_ptr(p, {off}, {n}.as_deref());")
            elif kind == "BITMAPSET":
                # libpg_query's reader leaves these out too (READ_BITMAPSET_FIELD).
                pass
            if kind == "INT":
                assert ty == "i32", (proto, out, ty)
                expr = {4: f"r.i32(p, {off})", 2: f"r.i16(p, {off}) as i32"}[size] if signed else \
                    {4: f"r.u32(p, {off}) as i32", 2: f"r.u16(p, {off}) as i32"}[size]
            elif kind == "UINT":
                assert ty == "u32", (proto, out, ty)
                expr = {4: f"r.u32(p, {off})", 2: f"r.u16(p, {off}) as u32"}[size]
            elif kind == "UINT64":
                assert ty == "u64" and size == 8, (proto, out, ty)
                expr = f"r.u64(p, {off})"
            elif kind == "LONG":
                assert ty == "i64" and size == 8, (proto, out, ty)
                expr = f"r.u64(p, {off}) as i64"
            elif kind == "FLOAT":
                assert ty == "f64" and size == 8, (proto, out, ty)
                expr = f"r.f64(p, {off})"
            elif kind == "BOOL":
                assert ty == "bool" and size == 1, (proto, out, ty)
                expr = f"r.bool(p, {off})"
            elif kind == "CHAR":
                assert ty.endswith("String") and size == 1, (proto, out, ty)
                expr = f"r.char(p, {off})"
            elif kind == "STRING":
                assert ty.endswith("String") and size == 8, (proto, out, ty)
                expr = f"r.string(p, {off})"
            elif kind == "ENUM":
                assert ty == "i32" and size == 4, (proto, out, ty)
                enum = args[1]
                used_enums.add(enum)
                expr = f"enum_{snake(enum)}(r.i32(p, {off}))"
            elif kind == "LIST":
                assert ty.endswith("Vec<Node>") and size == 8, (proto, out, ty)
                expr = f"r.list(p, {off})"
            elif kind == "NODE_PTR":
                assert ty.endswith("Option<::prost::alloc::boxed::Box<Node>>"), (proto, out, ty)
                how = "query_ptr" if (proto, out) in DEFINING_QUERIES else "node_ptr"
                expr = f"r.{how}(p, {off})"
            elif kind == "BITMAPSET":
                assert ty.endswith("Vec<u64>") and size == 8, (proto, out, ty)
                expr = f"r.bitmapset(p, {off})"
            elif kind in ("SPECIFIC_NODE_PTR", "SPECIFIC_NODE"):
                target = upper_camel(args[1])
                # Value nodes (String) are read by hand in the module above, like their writers.
                c_target = next((c for c, (pr, _, _) in funcs.items() if pr == args[1]), None)
                boxed = ty == f"::core::option::Option<::prost::alloc::boxed::Box<{target}>>"
                assert boxed or ty == f"::core::option::Option<{target}>", (proto, out, ty)
                reader = f"read_{snake(c_target)}" if c_target else f"super::read_{snake(args[1])}"
                how = "specific_ptr" if kind == "SPECIFIC_NODE_PTR" else "embedded"
                expr = f"r.{how}(p, {off}, {reader})"
                if boxed:
                    expr += ".map(Box::new)"
                deref = "&**x" if boxed else "x"
                if kind == "SPECIFIC_NODE_PTR":
                    writer = f"write_{snake(c_target)}" if c_target else f"super::write_{snake(args[1])}"
                    wbody.append(f"    if let Some(x) = &{n} {{ let v = {writer}(w, {deref}); w.put(p, {off}, v); }}")
                else:
                    assert c_target, (proto, out)
                    wbody.append(f"    if let Some(x) = &{n} {{ w.put::<u32>(p, {off}, {tag_of[c_target]}); "
                                 f"fill_{snake(c_target)}(w, p.add({off}), {deref}); }}")
            else:
                sys.exit(f"{proto}.{out}: field kind {kind} is not handled")
            body.append(f"        {rf}: {expr},")
        # Fields the writer never emits (an expression's `xpr` header) stay at their default,
        # as the protobuf decoder leaves them.
        for rf in want:
            if rf not in covered:
                body.append(f"        {rf}: Default::default(),")
                defaulted.add(f"{rust}.{rf}")
        params = "r: &mut Reader, p: *const u8" if fields else "_r: &mut Reader, _p: *const u8"
        fns.append(f"unsafe fn read_{snake(c_name)}({params}) -> pb::{rust} {{\n"
                   f"    pb::{rust} {{\n" + "\n".join(body) + "\n    }\n}\n")
        wparams = "w: &mut Writer, p: *mut u8, n: &pb::" if wbody else "_w: &mut Writer, _p: *mut u8, _n: &pb::"
        fns.append(f"unsafe fn fill_{snake(c_name)}({wparams}{rust}) {{\n" + "\n".join(wbody) + "\n}\n")
        # The tag again after the fields: an embedded first member (CreateForeignTableStmt's
        # CreateStmt) overwrites it, as libpg_query's reader then restores it (NodeSetTag).
        retag = f"    w.put::<u32>(p, 0, {tag_of[c_name]});\n" if any(
            k == "SPECIFIC_NODE" and layout[(struct, a[-1])][0] == 0 for k, a in fields) else ""
        fns.append(f"unsafe fn write_{snake(c_name)}(w: &mut Writer, n: &pb::{rust}) -> *mut u8 {{\n"
                   f"    let p = w.node({sizes[struct]}, {tag_of[c_name]});\n"
                   f"    fill_{snake(c_name)}(w, p, n);\n{retag}    p\n}}\n")

    arms, warms = [], []
    special_arms = []
    for tag, oneof_field, c_name, _ in cases:
        variant = upper_camel(oneof_field)
        value = tags[tag]
        if variant not in variants:
            sys.exit(f"T_{tag}: no NodeEnum variant {variant}")
        if c_name not in funcs:
            special_arms.append(f"// T_{tag} = {value}: {c_name}, read by hand (super::special)")
            continue
        ty, boxed = variants[variant]
        call = f"read_{snake(c_name)}(r, p)"
        arms.append(f"        {value} => NodeEnum::{variant}(" +
                    (f"Box::new({call})" if boxed else call) + "),")
        warms.append(f"        NodeEnum::{variant}(x) => write_{snake(c_name)}(w, {'&**x' if boxed else 'x'}),")

    enum_fns = []
    for enum in sorted(used_enums):
        pairs = sorted(enum_values[enum])
        if all(pb == c + 1 for c, pb in pairs) and [c for c, _ in pairs] == list(range(len(pairs))):
            enum_fns.append(f"fn enum_{snake(enum)}(v: i32) -> i32 {{\n"
                            f"    if (0..{len(pairs)}).contains(&v) {{ v + 1 }} else {{ -1 }}\n}}\n")
        else:
            arms_e = "\n".join(f"        {c} => {pb}," for c, pb in pairs)
            enum_fns.append(f"fn enum_{snake(enum)}(v: i32) -> i32 {{\n    match v {{\n{arms_e}\n"
                            f"        _ => -1,\n    }}\n}}\n")

    for enum in sorted(used_enums):
        pairs = sorted(enum_values[enum], key=lambda cp: cp[1])
        first_c = pairs[0][0]
        if all(pb == c + 1 for c, pb in pairs) and [c for c, _ in pairs] == list(range(len(pairs))):
            enum_fns.append(f"fn c_enum_{snake(enum)}(v: i32) -> i32 {{\n"
                            f"    if (1..={len(pairs)}).contains(&v) {{ v - 1 }} else {{ {first_c} }}\n}}\n")
        else:
            arms_e = "\n".join(f"        {pb} => {c}," for c, pb in pairs)
            enum_fns.append(f"fn c_enum_{snake(enum)}(v: i32) -> i32 {{\n    match v {{\n{arms_e}\n"
                            f"        _ => {first_c},\n    }}\n}}\n")

    # The walk over every node of a tree, in the order serde_json's (sorted) map of the tree
    # lists them: the node, then its fields by name.
    node_types = {ty for ty, _ in variants.values()}
    visits, visited = [], set()
    todo = sorted(node_types)
    while todo:
        ty = todo.pop()
        if ty in visited or ty not in structs:
            continue
        visited.add(ty)
        steps = []
        for rf, fty in sorted(structs[ty].items(), key=lambda kv: kv[0].removeprefix("r#")):
            m = re.fullmatch(r"::core::option::Option<(?:::prost::alloc::boxed::Box<)?(\w+)>+", fty)
            if fty == "::core::option::Option<::prost::alloc::boxed::Box<Node>>":
                steps.append(f"    if let Some(c) = &n.{rf} {{ walk_node(c, f); }}")
            elif fty == "::prost::alloc::vec::Vec<Node>":
                steps.append(f"    for c in &n.{rf} {{ walk_node(c, f); }}")
            elif m and m.group(1) in structs and m.group(1) != "Node":
                target = m.group(1)
                todo.append(target)
                deref = "&**c" if "Box<" in fty else "c"
                steps.append(f"    if let Some(c) = &n.{rf} {{ walk_{snake(target)}({deref}, f); }}")
        params = "n" if steps else "_n"
        fparam = "f" if steps else "_f"
        visits.append(f"fn walk_{snake(ty)}({params}: &pb::{ty}, {fparam}: &mut dyn FnMut(&NodeEnum)) {{\n"
                      + "\n".join(steps) + "\n}\n")
    walk_arms = []
    for variant, (ty, boxed) in sorted(variants.items()):
        if ty in visited:
            walk_arms.append(f"        NodeEnum::{variant}(x) => walk_{snake(ty)}({'&**x' if boxed else 'x'}, f),")

    special = {s: {f: layout[(s, f)][0] for f in fs} for s, fs in SPECIAL.items()}
    consts = [f"pub(super) const {snake(s).upper()}_{f.upper()}: usize = {off};"
              for s, fs in special.items() for f, off in fs.items()]
    special_tags = [f"pub(super) const T_{t.upper()}: u32 = {tags[t]};"
                    for t in ("List", "Integer", "Float", "Boolean", "String",
                              "BitString", "A_Const", "RawStmt")]
    special_sizes = [f"pub(super) const SIZE_{snake(t).upper()}: usize = {sizes[t]};"
                     for t in ("Integer", "Float", "Boolean", "String", "BitString", "A_Const",
                               "RawStmt")]

    text = f"""// @generated by scripts/gen-parse-tree.py from pg_query {version} (PostgreSQL {pg_version}).
// Do not edit: run the script again after upgrading pg_query.
//! Every node type's reader and writer: the fields libpg_query's protobuf writer emits, read
//! at their C offsets into the same Rust types the protobuf decoder makes, and written back as
//! its protobuf reader would build them.
#![allow(clippy::all, unused_unsafe)]

use super::{{Reader, Writer}};
use pg_query::protobuf as pb;
use pg_query::NodeEnum;

/// The pg_query release these offsets were read from.
pub(super) const PG_QUERY_VERSION: &str = "{version}";

{chr(10).join(consts)}
{chr(10).join(special_tags)}
{chr(10).join(special_sizes)}

/// The node at `p`, whose tag is `tag`; None for a tag this table does not hold.
pub(super) unsafe fn node(r: &mut Reader, p: *const u8, tag: u32) -> Option<NodeEnum> {{
    {chr(10).join("    " + a for a in special_arms).strip()}
    Some(match tag {{
{chr(10).join(arms)}
        _ => return r.special(p, tag),
    }})
}}

pub(super) unsafe fn read_raw_stmt_at(r: &mut Reader, p: *const u8) -> pb::RawStmt {{
    read_raw_stmt(r, p)
}}

/// A C node for `n`, allocated in the current memory context; null where libpg_query's
/// protobuf reader would give none, or for a kind written by hand that is not supported.
pub(super) unsafe fn write_node(w: &mut Writer, n: &NodeEnum) -> *mut u8 {{
    match n {{
{chr(10).join(warms)}
        other => w.special(other),
    }}
}}

/// Calls `f` on `node` and on every node under it, depth first, each node's fields in the
/// order of their names (the order a serde_json map of the tree lists them).
pub fn walk(node: &NodeEnum, f: &mut dyn FnMut(&NodeEnum)) {{
    f(node);
    match node {{
{chr(10).join(walk_arms)}
    }}
}}

fn walk_node(n: &pb::Node, f: &mut dyn FnMut(&NodeEnum)) {{
    if let Some(node) = &n.node {{
        walk(node, f);
    }}
}}

{chr(10).join(visits)}
{chr(10).join(fns)}
{chr(10).join(enum_fns)}"""
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    # As `cargo fmt` leaves it, so that running the script again changes nothing.
    subprocess.run(["rustfmt", "--edition", "2021", OUT], check=True)
    print(f"wrote {OUT}: {len(funcs)} node types, {len(used_enums)} enums, pg_query {version}")
    print("left at their default:", ", ".join(sorted(defaulted)))


if __name__ == "__main__":
    main()
