# Convenience targets; the README's two commands are scripts/demo.sh and scripts/test.sh.
.PHONY: setup test demo package clean
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
package:
	bash scripts/package.sh
clean:
	rm -rf dist demo_output
