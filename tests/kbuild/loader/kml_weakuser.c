// SPDX-License-Identifier: GPL-2.0
/* kmodsim loader fixture: a GPL module with a GPL-only import and a weak import of a proprietary
 * module's export: resolve_symbol()'s inherit_taint() refuses the second, and the weak binding makes
 * that fine (simplify_symbols()). */
#include <linux/module.h>
#include <linux/init.h>

extern int kms_a_gpl(int x);
extern int kml_prop_fn(int x) __attribute__((weak));

static int __init kml_weakuser_init(void)
{
	int r = kms_a_gpl(1);

	if (kml_prop_fn)
		r += kml_prop_fn(1);
	return r < 0 ? r : 0;
}

static void __exit kml_weakuser_exit(void)
{
}

module_init(kml_weakuser_init);
module_exit(kml_weakuser_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim loader fixture: weak user of a proprietary export");
