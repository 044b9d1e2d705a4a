pytest_plugins = ["tests.support.pg", "tests.support.kube"]
