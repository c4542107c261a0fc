// SPDX-License-Identifier: GPL-2.0
/* kmodsim loader fixture: a proprietary module with an export (license taint, inherit_taint). */
#include <linux/module.h>
#include <linux/init.h>

int kml_prop_fn(int x)
{
	return x + 1;
}
EXPORT_SYMBOL(kml_prop_fn);

static int __init kml_prop_init(void)
{
	return 0;
}

static void __exit kml_prop_exit(void)
{
}

module_init(kml_prop_init);
module_exit(kml_prop_exit);
MODULE_LICENSE("Proprietary");
MODULE_DESCRIPTION("kmodsim loader fixture: proprietary exporter");
