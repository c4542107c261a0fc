// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: kss_lib's main object. */
#include <linux/module.h>

int kss_add(int a, int b)
{
	return a + b;
}
EXPORT_SYMBOL_GPL(kss_add);

int kss_version(void)
{
	return 1;
}
EXPORT_SYMBOL(kss_version);

MODULE_LICENSE("GPL");
