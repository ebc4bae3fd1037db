//! Which ComfyUI backend a GPU process is: a process whose open sockets include
//! the listening socket of a backend on this machine (its URL's port on a
//! loopback address) is that backend. Read from `/proc/net/tcp{,6}` and the
//! process's `/proc/PID/fd` links, only for the few processes NVML lists; backends
//! on other hosts cannot be seen and stay unattributed.

use std::collections::HashMap;

use super::GpuReading;

/// The listening-socket inode of each local port in `ports`.
fn listening_inodes(ports: &[u16]) -> HashMap<u64, u16> {
    let mut out = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (10th field)
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let Some(port) = f[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if let (true, Ok(inode)) = (ports.contains(&port), f[9].parse::<u64>()) {
                out.insert(inode, port);
            }
        }
    }
    out
}

/// The socket inodes process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The port of `url` when it names this machine (loopback or `localhost`).
fn local_port(url: &str) -> Option<u16> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    local.then(|| u.port_or_known_default()).flatten()
}

/// Marks each GPU process that is one of `backends` (URLs) with that backend.
pub fn attribute(devices: &mut [GpuReading], backends: &[String]) {
    let by_port: HashMap<u16, &String> = backends
        .iter()
        .filter_map(|b| Some((local_port(b)?, b)))
        .collect();
    if by_port.is_empty() || devices.iter().all(|d| d.processes.is_empty()) {
        return;
    }
    let ports: Vec<u16> = by_port.keys().copied().collect();
    let listening = listening_inodes(&ports);
    for p in devices.iter_mut().flat_map(|d| d.processes.iter_mut()) {
        let port = socket_inodes(p.pid)
            .iter()
            .find_map(|i| listening.get(i).copied());
        p.backend = port.and_then(|port| by_port.get(&port)).map(|b| (*b).clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_backends_have_a_port() {
        assert_eq!(local_port("http://127.0.0.1:8188"), Some(8188));
        assert_eq!(local_port("http://localhost"), Some(80));
        assert_eq!(local_port("http://[::1]:9"), Some(9));
        assert_eq!(local_port("http://gpu2:8188"), None);
    }
}
