// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: only a weak import, of a module on the x/y/z cycle, and of a name nobody
 * exports (depmod -e stays silent about weak symbols). */
#include <linux/module.h>
#include <linux/init.h>

extern int kmcy_x_fn(int x) __attribute__((weak));
extern int kmcy_nowhere(int x) __attribute__((weak));

static int __init kmcy_w_init(void)
{
	if (kmcy_x_fn)
		return kmcy_x_fn(1) < 0;
	if (kmcy_nowhere)
		return kmcy_nowhere(1) < 0;
	return 0;
}

module_init(kmcy_w_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: weak w");
