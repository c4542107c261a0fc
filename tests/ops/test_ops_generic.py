"""A non-KVM table (``file_operations``): tables reached through typed fields, shadowing, and
instances with macro-generated items.  Expected values are written from the snippet by hand."""

from __future__ import annotations

from kmodsim.ops import load_inputs, run_census

SOURCE = """\
struct file_operations {
	struct module *owner;
	ssize_t (*read)(struct file *, char __user *, size_t, loff_t *);
	long (*unlocked_ioctl)(struct file *, unsigned int, unsigned long);
	long (*compat_ioctl)(struct file *, unsigned int, unsigned long);
	int (*mmap)(struct file *, struct vm_area_struct *);
};
struct file { const struct file_operations *f_op; };
struct miscdevice { const struct file_operations *ops; };
struct kvm_device { const struct kvm_device_ops *ops; };
struct kvm_device_ops { int (*mmap)(struct kvm_device *dev, struct vm_area_struct *vma); };

#define KVM_COMPAT(c) .compat_ioctl = (c)

static const struct file_operations kvm_vm_fops = {
	.unlocked_ioctl = kvm_vm_ioctl,
	KVM_COMPAT(kvm_vm_compat_ioctl),
};

static const struct file_operations plain_fops = { THIS_MODULE, plain_read };

ssize_t vfs_read(struct file *file, char __user *buf, size_t count, loff_t *pos)
{
	if (!file->f_op->read)
		return -EINVAL;
	return file->f_op->read(file, buf, count, pos);
}

int misc_mmap(struct miscdevice *misc, struct file *file, struct vm_area_struct *vma)
{
	return misc->ops->mmap(file, vma);
}

int kvm_device_mmap(struct kvm_device *dev, struct vm_area_struct *vma)
{
	if (dev->ops->mmap)
		return dev->ops->mmap(dev, vma);
	return -ENODEV;
}

long shadow(struct file *file)
{
	struct kvm_device *ops = file_to_dev(file);

	return ops->mmap(ops, NULL);
}
"""


def test_file_operations(tmp_path):
    (tmp_path / "fs.c").write_text(SOURCE)
    inputs, errors, _ = load_inputs([str(tmp_path)])
    c = run_census("file_operations", inputs)
    assert errors == [] and c.parse_errors == []
    assert [m.name for m in c.members] == ["read", "unlocked_ioctl", "compat_ioctl", "mmap"]
    assert c.data_members == ["owner"]
    sites = {(m.name, cs.line, cs.function) for m in c.members for cs in m.call_sites}
    # file->f_op (struct file holds f_op) and misc->ops (struct miscdevice holds a file_operations
    # ops) are tables; dev->ops is a kvm_device_ops, and the local "ops" is a kvm_device
    assert sites == {("read", 26, "vfs_read"), ("mmap", 31, "misc_mmap")}
    by = {m.name: m for m in c.members}
    assert [(n.line, n.idiom, n.fallback) for n in by["read"].null_checks] == [(24, "if (!p->m)", "error")]
    assert not by["mmap"].null_checks
    inst = {i.name: i.implementations for i in c.instances}
    # the KVM_COMPAT() item is a macro: not taken as a positional value
    assert inst["kvm_vm_fops"] == {"unlocked_ioctl": "kvm_vm_ioctl"}
    # a fully positional list follows the declaration order (owner is a data member)
    assert inst["plain_fops"] == {"read": "plain_read"}
