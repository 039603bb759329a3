package rules

import (
	"slices"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// The prefilter: most audit events (lease renewals, status updates,
// watches) can match no rule at all, so an event is only shown to the rules
// whose condition allows its stage and its event.objectRef.resource (read
// by the analysis package), and then only to those whose guard it passes.

// index selects, per stage and resource, the rules worth evaluating, in
// file order.
type index struct {
	byStage map[string]*stageIndex
	// known holds the stages kube-apiserver writes, so that the lookup
	// every event makes is a switch rather than a map access.
	known [4]*stageIndex
}

// knownStage is the slot of a stage in index.known, -1 for others.
func knownStage(stage string) int {
	switch stage {
	case audit.StageRequestReceived:
		return 0
	case audit.StageResponseStarted:
		return 1
	case audit.StageResponseComplete:
		return 2
	case audit.StagePanic:
		return 3
	}
	return -1
}

type stageIndex struct {
	byResource map[string][]*Rule
	other      []*Rule // rules that do not constrain the resource
}

func (ix *index) candidates(stage, resource string) []*Rule {
	var si *stageIndex
	if k := knownStage(stage); k >= 0 {
		si = ix.known[k]
	} else {
		si = ix.byStage[stage]
	}
	if si == nil {
		return nil
	}
	if rs, ok := si.byResource[resource]; ok {
		return rs
	}
	return si.other
}

func buildIndex(rules []*Rule) *index {
	ix := &index{byStage: map[string]*stageIndex{}}
	for _, r := range rules {
		if !r.Enabled {
			continue
		}
		for _, st := range r.Stages {
			si := ix.byStage[st]
			if si == nil {
				si = &stageIndex{byResource: map[string][]*Rule{}}
				ix.byStage[st] = si
			}
			if r.resources == nil {
				si.other = append(si.other, r)
				for res := range si.byResource {
					si.byResource[res] = append(si.byResource[res], r)
				}
				continue
			}
			for _, res := range r.resources {
				if _, ok := si.byResource[res]; !ok {
					si.byResource[res] = slices.Clone(si.other)
				}
				si.byResource[res] = append(si.byResource[res], r)
			}
		}
	}
	for st, si := range ix.byStage {
		if k := knownStage(st); k >= 0 {
			ix.known[k] = si
		}
	}
	return ix
}
