// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: a leaf below the a/b cycle; exports kmcy_shared, as kmcy_e does. */
#include <linux/module.h>
#include <linux/init.h>

int kmcy_d_fn(int x)
{
	return x - 1;
}
EXPORT_SYMBOL(kmcy_d_fn);

int kmcy_shared(int x)
{
	return x;
}
EXPORT_SYMBOL(kmcy_shared);

static int __init kmcy_d_init(void)
{
	return 0;
}

module_init(kmcy_d_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: leaf d");
MODULE_ALIAS("block-major-250-*");
MODULE_ALIAS("block-major-251-3");
MODULE_ALIAS("devname:kmcy/d");
