// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a module with a dual license, a weak import, and no exports of its own. */
#include <linux/module.h>
#include <linux/init.h>
#include <linux/jiffies.h>

extern int kms_b_twice(int x) __attribute__((weak));

static int __init kms_c_init(void)
{
	if (kms_b_twice)
		return kms_b_twice((int)(jiffies & 1)) < 0;
	return 0;
}

module_init(kms_c_init);
MODULE_LICENSE("Dual BSD/GPL");
MODULE_DESCRIPTION("kmodsim fixture: dual-licensed leaf");
