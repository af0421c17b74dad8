"""The evaluate mode's contract: its folders under the processing root (it takes no arguments) and the
file a workflow's quality gate reads."""

MODEL = "model"  # model.tar.gz, as training wrote it
TEST = "test"  # the test split
OUTPUT = "evaluation"  # evaluation.json and the report
EVALUATION_FILE = "evaluation.json"
