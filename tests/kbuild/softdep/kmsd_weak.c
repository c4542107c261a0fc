// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a weak dependency (never loaded by modprobe). */
#include <linux/module.h>
#include <linux/init.h>

static int __init kmsd_weak_init(void)
{
	return 0;
}

static void __exit kmsd_weak_exit(void)
{
}

module_init(kmsd_weak_init);
module_exit(kmsd_weak_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: a weak dependency (never loaded by modprobe)");
