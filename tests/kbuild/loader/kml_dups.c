// SPDX-License-Identifier: GPL-2.0
/* kmodsim loader fixture: exports two names basic/ exports too, one per table, so that the table
 * verify_exported_symbols() walks first (mod->syms, then mod->gpl_syms) decides which clash is named:
 * kms_b_twice (GPL-only in kms_b) exported plainly, kms_a_counter (plain in kms_a) exported GPL-only. */
#include <linux/module.h>
#include <linux/init.h>

int kms_b_twice(int x)
{
	return x + x;
}
EXPORT_SYMBOL(kms_b_twice);

int kms_a_counter;
EXPORT_SYMBOL_GPL(kms_a_counter);

static int __init kml_dups_init(void)
{
	return 0;
}

static void __exit kml_dups_exit(void)
{
}

module_init(kml_dups_init);
module_exit(kml_dups_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim loader fixture: exporter of names other modules export");
