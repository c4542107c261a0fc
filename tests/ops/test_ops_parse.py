"""Masking of kernel macros and parse-error reporting (kmodsim.ops.parse)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kmodsim.ops import parse


def _tree_errors(src: bytes, tmp_path: Path, name: str = "t.c") -> list[parse.ParseError]:
    f = tmp_path / name
    f.write_bytes(src)
    return parse.read_source(f, name, explicit=True).errors


def test_attribute_macros_do_not_derail_parsing(tmp_path):
    src = b"""
static int __init vmx_init(void) { return 0; }
static void __exit vmx_exit(void) { }
struct kvm_x86_ops kvm_x86_ops __read_mostly;
static struct kvm_x86_ops svm_x86_ops __initdata = { .a = b, };
long copy(void __user *to, const void __user *from) { return 0; }
noinstr void enter(void) { }
static __always_inline int __must_check f(int __percpu *p) { return 0; }
static int __printf(2, 3) logf(int lvl, const char *fmt, ...) { return 0; }
struct s { int x; } __aligned(8);
"""
    assert _tree_errors(src, tmp_path) == []
    # and the unmasked text really does not parse: the masking is doing the work
    assert parse.parser().parse(src).root_node.has_error


def test_iterator_macros_parse_as_loops(tmp_path):
    src = b"""
void f(struct kvm *kvm)
{
	struct kvm_vcpu *vcpu;
	unsigned long i;

	kvm_for_each_vcpu(i, vcpu, kvm) {
		kvm_vcpu_kick(vcpu);
	}
	list_for_each_entry(pos, &head, link)
		g(pos);
	if (x)
		hash_for_each_possible(tbl, obj, node, key) { h(obj); }
	else
		for_each_set_bit(i, map, 64)
			h(i);
}
"""
    assert _tree_errors(src, tmp_path) == []
    tree = parse.parser().parse(parse.mask_source(src))
    loops = parse.captures(parse.query("(while_statement) @w"), tree.root_node)["w"]
    assert len(loops) == 4


def test_iterator_name_used_as_a_function_is_left_alone():
    src = b"int n = count_for_each_cpu(mask);\nvoid list_for_each_x(int a);\n"
    assert parse.mask_source(src) == src


def test_conditional_directives_inside_initializers_are_read(tmp_path):
    src = b"""
static struct ops o = {
	.a = fa,
#ifdef CONFIG_X86_64
	.b = fb,
#endif
	.c = fc,
};
"""
    f = tmp_path / "t.c"
    f.write_bytes(src)
    sf = parse.read_source(f, "t.c", explicit=True)
    assert sf.errors == []
    pairs = parse.captures(parse.query("(initializer_pair) @p"), sf.tree.root_node)["p"]
    assert sorted(sf.text(p) for p in pairs) == [".a = fa", ".b = fb", ".c = fc"]


def test_errors_are_reported_with_their_function(tmp_path):
    src = b"""
int good(void) { return 1; }
int broken(int x) { return x + ; }
int also_good(void) { return 2; }
"""
    errs = _tree_errors(src, tmp_path)
    assert errs, "the broken function must be reported"
    assert {e.function for e in errs} == {"broken"}
    assert all(e.line == 3 and e.file == "t.c" for e in errs)


def test_masking_keeps_comments_and_strings():
    src = b'/* __init list_for_each_entry(a,b,c) { */\nconst char *s = "__user noinstr";\n'
    assert parse.mask_source(src) == src


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    b"__init", b"__user", b" ", b"\n", b"(", b")", b"{", b"}", b";", b",", b"x", b"/*", b"*/", b"//",
    b'"', b"'", b"#define", b"list_for_each_entry", b"struct", b"case", b"...", b":", b"min_t",
    b"unsigned int", b"__aligned", b"\\\n", b"else",
])).map(b"".join))
def test_masking_preserves_length_and_lines(data):
    masked = parse.mask_source(data)
    assert len(masked) == len(data)
    assert [i for i, c in enumerate(masked) if c == 0x0A] == [i for i, c in enumerate(data) if c == 0x0A]
