// SPDX-License-Identifier: GPL-2.0
/* kmodsim loader fixture: uses a GPL-only export (kms_a_gpl) and a proprietary module's export. */
#include <linux/module.h>
#include <linux/init.h>

extern int kms_a_gpl(int x);
extern int kml_prop_fn(int x);

static int __init kml_gpluser_init(void)
{
	return kms_a_gpl(0) + kml_prop_fn(-1);
}

static void __exit kml_gpluser_exit(void)
{
}

module_init(kml_gpluser_init);
module_exit(kml_gpluser_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim loader fixture: GPL-only user and proprietary user at once");
