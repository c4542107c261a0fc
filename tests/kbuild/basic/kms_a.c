// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a provider with plain, GPL-only and namespaced exports, parameters,
 * aliases and a softdep. */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/init.h>

static int count = 3;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "how many things to count");

static char *label = "kms";
module_param(label, charp, 0444);
MODULE_PARM_DESC(label, "a label");

static bool verbose;
module_param(verbose, bool, 0644);

int kms_a_plain(int x)
{
	return x + count;
}
EXPORT_SYMBOL(kms_a_plain);

int kms_a_gpl(int x)
{
	return x * count;
}
EXPORT_SYMBOL_GPL(kms_a_gpl);

int kms_a_ns(int x)
{
	return x - count;
}
EXPORT_SYMBOL_NS_GPL(kms_a_ns, KMSIM_NS);

int kms_a_counter;
EXPORT_SYMBOL(kms_a_counter);

static int __init kms_a_init(void)
{
	pr_debug("kms_a: %s %d %d\n", label, count, verbose);
	return 0;
}

static void __exit kms_a_exit(void)
{
}

module_init(kms_a_init);
module_exit(kms_a_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodsim");
MODULE_DESCRIPTION("kmodsim fixture: provider");
MODULE_ALIAS("kmsim-provider");
MODULE_ALIAS("kmsim:a*");
MODULE_SOFTDEP("pre: kms_c");
