// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a user of kmm_lib's exports, with init and exit. */
#include <linux/module.h>
#include <linux/slab.h>

extern int kmm_counter;
int kmm_sum(int n);
char *kmm_dup(const char *s);

static char *kmm_copy;
static int kmm_user_data[32] __read_mostly = { 7 };

static int __init kmm_user_init(void)
{
	kmm_copy = kmm_dup("kmodsim");
	kmm_counter = kmm_sum(8) + kmm_user_data[0];
	pr_info("kmm: duplicating %s done\n", kmm_copy ? kmm_copy : "(null)");
	return 0;
}

static void __exit kmm_user_exit(void)
{
	kfree(kmm_copy);
}

module_init(kmm_user_init);
module_exit(kmm_user_exit);
MODULE_LICENSE("GPL");
