import json
from test_decisions import train_run, TrainDecided, Decided  # noqa


def test_dbg(train_run):
    for d in train_run["report"].runs[0].to_dict()["decisions"]:
        print(
            json.dumps(
                {
                    k: d[k]
                    for k in (
                        "callback",
                        "by_logged",
                        "by_reference",
                        "agree",
                        "monitor_verdict",
                        "reads",
                        "mismatched_epochs",
                        "observed",
                    )
                }
                | {"u": d.get("unverified_reads")}
            )
        )
