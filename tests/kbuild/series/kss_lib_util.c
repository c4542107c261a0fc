// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: kss_lib's helpers. */
#include <linux/module.h>

static int kss_factor = 3;

int kss_scale(int x)
{
	return x * kss_factor;
}
EXPORT_SYMBOL_GPL(kss_scale);
