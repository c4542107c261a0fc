// SPDX-License-Identifier: GPL-2.0
/* kmodsim loader fixture: one parameter of each standard type; init returns `ret' (so a script can
 * make the module's own init fail, e.g. ret=-19, and say so with "# init=-19"). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/init.h>

static int ret;
module_param(ret, int, 0444);
static unsigned int u = 1;
module_param(u, uint, 0444);
static short s;
module_param(s, short, 0444);
static unsigned short us;
module_param(us, ushort, 0444);
static unsigned char b;
module_param(b, byte, 0444);
static long l;
module_param(l, long, 0444);
static unsigned long ul;
module_param(ul, ulong, 0444);
static bool on;
module_param(on, bool, 0444);
static bool off;
module_param(off, invbool, 0444);
static char *name = "kml";
module_param(name, charp, 0444);

int kml_params_value(void)
{
	return ret + u + s + us + b + l + ul + on + off + (name ? 1 : 0);
}
EXPORT_SYMBOL_GPL(kml_params_value);

static int __init kml_params_init(void)
{
	return ret;
}

static void __exit kml_params_exit(void)
{
}

module_init(kml_params_init);
module_exit(kml_params_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim loader fixture: parameters of every standard type");
