// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a consumer of kms_a's plain, GPL-only and namespaced exports and of vmlinux. */
#include <linux/module.h>
#include <linux/init.h>
#include <linux/slab.h>

extern int kms_a_plain(int x);
extern int kms_a_gpl(int x);
extern int kms_a_ns(int x);
extern int kms_a_counter;

int kms_b_twice(int x)
{
	return 2 * kms_a_plain(x);
}
EXPORT_SYMBOL_GPL(kms_b_twice);

static int __init kms_b_init(void)
{
	void *p = kmalloc(32, GFP_KERNEL);

	kms_a_counter += kms_a_gpl(1) + kms_a_ns(2);
	kfree(p);
	return 0;
}

static void __exit kms_b_exit(void)
{
}

module_init(kms_b_init);
module_exit(kms_b_exit);
MODULE_LICENSE("GPL v2");
MODULE_IMPORT_NS(KMSIM_NS);
MODULE_DESCRIPTION("kmodsim fixture: consumer");
