pytest_plugins = ["tests.pg", "tests.kube"]
