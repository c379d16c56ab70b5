package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The record is JSON. Records written by earlier versions were a few
// lines of "key value" (below); a container started under such a version
// must still stop cleanly, so they are still read (decodeKV), never written.
//
//	container "web1"
//	config "/var/lib/lxc/web1/config"
//	mount_ns 4026532301
//	loop role="image" device="/dev/loop3" number=3 diskseq=9 dev=65024 ino=12 mount_ns=4026532301 shared=false backing="/srv/web1.img"
//	mountpoint "/run/lxc-hooks/web1-1a2b3c4d/image"

func encode(w io.Writer, r *Record) error {
	return json.NewEncoder(w).Encode(r)
}

func decode(b []byte) (*Record, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		r := &Record{}
		if err := json.Unmarshal(t, r); err != nil {
			return nil, err
		}
		return r, nil
	}
	return decodeKV(bytes.NewReader(b))
}

func decodeKV(rd io.Reader) (*Record, error) {
	r := &Record{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		key, rest, _ := strings.Cut(sc.Text(), " ")
		var err error
		switch key {
		case "container":
			r.Container, err = strconv.Unquote(rest)
		case "config":
			r.ConfigFile, err = strconv.Unquote(rest)
		case "mount_ns":
			r.MountNS, err = strconv.ParseUint(rest, 10, 64)
		case "loop", "leftover":
			var l Loop
			if l, err = decodeLoop(rest); err == nil {
				if key == "loop" {
					r.Loops = append(r.Loops, l)
				} else {
					r.Leftovers = append(r.Leftovers, l)
				}
			}
		case "mountpoint":
			var m string
			if m, err = strconv.Unquote(rest); err == nil {
				r.Mountpoints = append(r.Mountpoints, m)
			}
		case "":
		default:
			err = fmt.Errorf("unknown key %q", key)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	return r, sc.Err()
}

func decodeLoop(s string) (Loop, error) {
	var l Loop
	for s != "" {
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			return l, fmt.Errorf("malformed loop field %q", s)
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return l, err
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
		}
		s = strings.TrimPrefix(rest, " ")
		var err error
		switch key {
		case "role":
			l.Role = val
		case "device":
			l.Device = val
		case "backing":
			l.Backing = val
		case "number":
			l.Number, err = strconv.Atoi(val)
		case "diskseq":
			l.Diskseq, err = strconv.ParseUint(val, 10, 64)
		case "dev":
			l.Dev, err = strconv.ParseUint(val, 10, 64)
		case "ino":
			l.Ino, err = strconv.ParseUint(val, 10, 64)
		case "mount_ns":
			l.MountNS, err = strconv.ParseUint(val, 10, 64)
		case "shared":
			l.Shared, err = strconv.ParseBool(val)
		}
		if err != nil {
			return l, fmt.Errorf("loop field %s: %w", key, err)
		}
	}
	return l, nil
}
