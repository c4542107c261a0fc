// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: uses the name two modules export, kmcy_e, and kmcy_c only weakly. */
#include <linux/module.h>
#include <linux/init.h>

extern int kmcy_shared(int x);
extern int kmcy_e_fn(int x);
extern int kmcy_c_fn(int x) __attribute__((weak));

static int __init kmcy_f_init(void)
{
	int r = kmcy_shared(1) + kmcy_e_fn(2);

	if (kmcy_c_fn)
		r += kmcy_c_fn(3);
	return r < 0;
}

module_init(kmcy_f_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: top f");
MODULE_ALIAS("pci:v00001234d0000ABCDsv*sd*bc*sc*i*");
