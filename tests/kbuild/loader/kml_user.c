// SPDX-License-Identifier: GPL-2.0
/* kmodsim loader fixture: a GPL module using a proprietary module's export (inherits the taint). */
#include <linux/module.h>
#include <linux/init.h>

extern int kml_prop_fn(int x);

static int __init kml_user_init(void)
{
	return kml_prop_fn(-1);
}

static void __exit kml_user_exit(void)
{
}

module_init(kml_user_init);
module_exit(kml_user_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim loader fixture: user of a proprietary export");
