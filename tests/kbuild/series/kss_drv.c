// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a driver using kss_lib. */
#include <linux/module.h>

int kss_add(int a, int b);

static int kss_drv_state[16];

static int __init kss_drv_init(void)
{
	kss_drv_state[0] = kss_add(1, 2);
	return 0;
}

static void __exit kss_drv_exit(void)
{
}

module_init(kss_drv_init);
module_exit(kss_drv_exit);
MODULE_LICENSE("GPL");
