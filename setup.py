"""The one compiled piece: ireasoner/rewards/_gram.c (see its header). `optional=True`: where
no C compiler is found, the install still succeeds and step_level uses its torch path."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ireasoner.rewards._gram", ["ireasoner/rewards/_gram.c"],
                             extra_compile_args=["-O3"], optional=True)])
